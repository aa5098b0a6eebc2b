/**
 * Generation: greedy or self-speculative, with the decode loop on the GPU. The host submits
 * batches of steps ahead and reads tokens back asynchronously (readback.ts); it reads as:
 * validate, start, then a loop of next snapshot / yield new tokens / stop check, then the stats.
 * @module
 */
import {
  AbortedError,
  describeValue,
  InvalidInputError,
  ModelStateError,
  TokenizerError,
} from "../gpu/errors.ts";
import { MAX_FUTURE, MAX_STOP_IDS, S } from "../kernels/state.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import type { Model } from "../heads/model.ts";
import { applyChatTemplate, type ChatMessage } from "../io/chat.ts";
import { checkIds, createTextStream } from "../io/tokenizer.ts";
import { type DraftSource, headDraftSource } from "./drafts.ts";
import { Batches } from "./readback.ts";
import { Session, type Snapshot } from "./session.ts";
import type { Sampling } from "./sample.ts";
import { type GenerationStats, generationStats } from "./stats.ts";

/** Options of {@link generate} and {@link complete}. */
export interface GenerateOptions {
  /** Most tokens to generate (>= 1). Generation also ends at the model's maxSeqLen. */
  maxTokens: number;
  /**
   * What ends generation besides the model's EOS ids: token ids, or strings (with a tokenizer).
   * The stop is part of the output, then nothing more. A string that is one token is checked on
   * the GPU like an id; a longer one is found in the decoded text as batches are read back.
   */
  stop?: readonly (number | string)[];
  /** Keep going past the model's EOS ids (`model.eosIds`). Default false. */
  ignoreEos?: boolean;
  /** The tokenizer for a string or chat prompt and for text output; default `model.tokenizer`. */
  tokenizer?: Tokenizer;
  /** Aborts the generation; the iterator then throws {@link AbortedError}. */
  signal?: AbortSignal;
  /**
   * "greedy": one token per forward pass. "speculative": each forward pass verifies the drafts of
   * heads 2..nFuture and emits the accepted ones plus one token of its own; the output is
   * identical to greedy. Default "greedy".
   */
  mode?: "greedy" | "speculative";
  /** Where speculative drafts come from; default the model's heads ({@link headDraftSource}). */
  drafts?: DraftSource;
  /**
   * Rows verified per step in speculative mode, in [1, 8]: 1 + drafts per step. Default the
   * model's nFuture, or for sequential MTP modules mtpDepth + 1 (any size works for them: past
   * the trained modules the last one drafts again).
   */
  blockSize?: number;
  /** Record GPU timestamps per batch of steps (when the device supports them). */
  timestamps?: boolean;
  /**
   * Sampling temperature, >= 0: the logits are divided by it before the softmax. Default 0:
   * greedy (the argmax). With `mode: "speculative"` sampling stays lossless: a draft is accepted
   * with the probability the trunk gives it, and a rejected one is replaced by a sample of the
   * trunk's distribution without it (Leviathan et al., Chen et al.), so the tokens follow exactly
   * the distribution of plain sampling.
   */
  temperature?: number;
  /** Sample from the k most likely tokens only (ties kept); an integer >= 1. Default: all. */
  topK?: number;
  /** Sample from the smallest most-likely set holding this probability, in (0, 1]. Default 1. */
  topP?: number;
  /** Drop tokens less than minP times as likely as the most likely one, in [0, 1). Default 0. */
  minP?: number;
  /**
   * Penalty on tokens already in the prompt or output (as transformers does it: a positive logit
   * is divided by it, a negative one multiplied), > 0. Default 1: none. Applies to greedy too.
   */
  repetitionPenalty?: number;
  /**
   * Seed of the random numbers, an integer in [0, 2^53): with the same seed, the same call gives
   * the same tokens on any GPU (Philox keyed by seed and position). Default: a random seed,
   * reported in the stats.
   */
  seed?: number;
}

/** A prompt: token ids, text (needs a tokenizer), or chat messages (needs a chat template). */
export type Prompt = readonly number[] | string | readonly ChatMessage[];

/** One chunk of a generation's output, as it is read back. */
export interface Chunk {
  /** The new token ids. */
  ids: number[];
  /**
   * Their text, when there is a tokenizer: chunks never split a character, and their
   * concatenation is the decoding of all ids.
   */
  text?: string;
}

/** Result of {@link complete}. */
export interface Completion {
  /** The generated token ids (the prompt excluded). */
  tokens: number[];
  /** Their text, when there is a tokenizer. */
  text?: string;
  /** Statistics of the generation. */
  stats: GenerationStats;
}

const isId = (t: unknown, vocab: number) =>
  Number.isInteger(t) && (t as number) >= 0 && (t as number) < vocab;

function needTokenizer(t: Tokenizer | null, what: string): Tokenizer {
  if (!t) {
    throw new InvalidInputError(
      `${what} needs a tokenizer: load the model with loadModel() from a folder with ` +
        `tokenizer.json, set model.tokenizer, or pass options.tokenizer`,
    );
  }
  return t;
}

/** The prompt's token ids: as given, encoded, or rendered by the chat template and encoded. */
function promptIds(model: Model, prompt: Prompt, tokenizer: Tokenizer | null): readonly number[] {
  if (typeof prompt === "string") {
    const t = needTokenizer(tokenizer, "a string prompt");
    const ids = t.encode(prompt);
    checkIds(ids, model.config.vocabSize, `the prompt's tokens (${t.source})`);
    return ids;
  }
  if (Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] === "object") {
    const t = needTokenizer(tokenizer, "a chat prompt");
    if (t.chatTemplate === undefined) {
      throw new TokenizerError(
        `${t.source} has no chat template: pass a plain string prompt instead of messages`,
      );
    }
    const text = applyChatTemplate(t.chatTemplate, prompt as ChatMessage[], {
      bosToken: t.bosToken,
      eosToken: t.eosToken,
      source: `${t.source}'s chat template`,
    });
    const ids = t.encode(text, { addSpecialTokens: false });
    checkIds(ids, model.config.vocabSize, `the chat prompt's tokens (${t.source})`);
    return ids;
  }
  return prompt as readonly number[];
}

/** Rows of a speculative block with the model's own heads as drafts. */
function defaultBlockSize(c: Model["config"]): number {
  return c.headKind === "sequential" ? c.mtpDepth + 1 : c.nFuture;
}

/** Stop ids for the GPU, and strings the host finds in the text. */
function stops(
  model: Model,
  o: GenerateOptions,
  tokenizer: Tokenizer | null,
): { ids: number[]; strings: string[] } {
  const stop = o.stop ?? [];
  if (!Array.isArray(stop)) {
    throw new InvalidInputError(
      `stop must be an array of token ids or strings, got ${describeValue(stop)}`,
    );
  }
  const ids = new Set<number>(o.ignoreEos ? [] : model.eosIds);
  const strings: string[] = [];
  stop.forEach((s, i) => {
    if (typeof s === "string") {
      if (s.length === 0) throw new InvalidInputError(`stop[${i}] is the empty string`);
      const t = needTokenizer(tokenizer, `stop[${i}] = ${describeValue(s)}`);
      const enc = t.encode(s, { addSpecialTokens: false });
      if (enc.length === 1 && t.decode(enc) === s && enc[0] < model.config.vocabSize) {
        ids.add(enc[0]);
      } else strings.push(s);
    } else if (!isId(s, model.config.vocabSize)) {
      throw new InvalidInputError(
        `stop[${i}] = ${
          describeValue(s)
        } is not a token id: ids must be in [0, ${model.config.vocabSize})`,
      );
    } else ids.add(s);
  });
  if (ids.size > MAX_STOP_IDS) {
    throw new InvalidInputError(`at most ${MAX_STOP_IDS} stop ids are supported, got ${ids.size}`);
  }
  return { ids: [...ids], strings };
}

function validate(model: Model, prompt: readonly number[], o: GenerateOptions): void {
  const c = model.config;
  if (!Array.isArray(prompt) || prompt.length === 0) {
    throw new InvalidInputError(
      `prompt must be a non-empty array of token ids, a string or chat messages, got ${
        describeValue(prompt)
      }`,
    );
  }
  if (prompt.length >= c.maxSeqLen) {
    throw new InvalidInputError(
      `prompt has ${prompt.length} tokens but maxSeqLen is ${c.maxSeqLen}: shorten the prompt to ` +
        `at most ${c.maxSeqLen - 1} tokens or use a model with a longer maxSeqLen`,
    );
  }
  const bad = prompt.findIndex((t) => !isId(t, c.vocabSize));
  if (bad >= 0) {
    throw new InvalidInputError(
      `prompt[${bad}] = ${describeValue(prompt[bad])} is not a token id: ids must be integers ` +
        `in [0, ${c.vocabSize})`,
    );
  }
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) {
    throw new InvalidInputError(
      `maxTokens must be an integer >= 1, got ${describeValue(o.maxTokens)}`,
    );
  }
  if (o.mode !== undefined && o.mode !== "greedy" && o.mode !== "speculative") {
    throw new InvalidInputError(
      `mode must be "greedy" or "speculative", got ${describeValue(o.mode)}`,
    );
  }
  if (
    o.blockSize !== undefined &&
    (!Number.isInteger(o.blockSize) || o.blockSize < 1 || o.blockSize > MAX_FUTURE)
  ) {
    throw new InvalidInputError(
      `blockSize must be an integer in [1, ${MAX_FUTURE}], got ${describeValue(o.blockSize)}`,
    );
  }
  if (
    o.mode === "speculative" && !o.drafts && o.blockSize !== undefined &&
    o.blockSize !== c.nFuture && c.headKind !== "sequential"
  ) {
    throw new InvalidInputError(
      `with the model's heads as drafts the block size is nFuture (${c.nFuture}); got ${o.blockSize}`,
    );
  }
  const num = (v: unknown) => typeof v === "number" && !Number.isNaN(v);
  const refuse = (what: string, v: unknown) => {
    throw new InvalidInputError(`${what}, got ${describeValue(v)}`);
  };
  if (
    o.temperature !== undefined &&
    !(num(o.temperature) && o.temperature >= 0 && isFinite(o.temperature))
  ) {
    refuse("temperature must be a number >= 0 (0: greedy)", o.temperature);
  }
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1)) {
    refuse("topK must be an integer >= 1", o.topK);
  }
  if (o.topP !== undefined && !(num(o.topP) && o.topP > 0 && o.topP <= 1)) {
    refuse("topP must be in (0, 1]", o.topP);
  }
  if (o.minP !== undefined && !(num(o.minP) && o.minP >= 0 && o.minP < 1)) {
    refuse("minP must be in [0, 1)", o.minP);
  }
  if (
    o.repetitionPenalty !== undefined &&
    !(num(o.repetitionPenalty) && o.repetitionPenalty > 0 && isFinite(o.repetitionPenalty))
  ) {
    refuse("repetitionPenalty must be a number > 0 (1: none)", o.repetitionPenalty);
  }
  if (
    o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0 && o.seed < 2 ** 53)
  ) {
    refuse("seed must be an integer in [0, 2^53)", o.seed);
  }
  if (o.signal?.aborted) throw new AbortedError("the signal was aborted before generation started");
}

/** The sampling of a generation, or null for plain greedy decoding. */
function samplingOf(o: GenerateOptions): Sampling | null {
  const temperature = o.temperature ?? 0;
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  if (temperature === 0 && repetitionPenalty === 1) return null;
  return {
    temperature,
    topK: o.topK ?? 0,
    topP: o.topP ?? 1,
    minP: o.minP ?? 0,
    repetitionPenalty,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 53),
  };
}

/**
 * Generates tokens after `prompt`, yielding chunks as they are read back: their ids and, with a
 * tokenizer, their text. The generator's return value is the {@link GenerationStats}.
 *
 * @throws {InvalidInputError} for a bad prompt or options; {@link TokenizerError} for text the
 * tokenizer cannot turn into the model's ids; {@link AbortedError} when aborted;
 * {@link ModelStateError} when the model is disposed, before or during the generation.
 * @example
 * ```ts
 * import { createModel, generate } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 64 });
 * for await (const { ids } of generate(model, [1, 2, 3], { maxTokens: 16, mode: "speculative" })) {
 *   console.log(ids);
 * }
 * model.dispose();
 * ```
 */
export async function* generate(
  model: Model,
  input: Prompt,
  options: GenerateOptions,
): AsyncGenerator<Chunk, GenerationStats, undefined> {
  if (typeof options !== "object" || options === null) {
    throw new InvalidInputError(
      `options must be an object with maxTokens, got ${describeValue(options)}`,
    );
  }
  model.assertUsable();
  const tokenizer = options.tokenizer ?? model.tokenizer;
  const prompt = promptIds(model, input, tokenizer);
  validate(model, prompt, options);
  const stop = stops(model, options, tokenizer);
  const text = tokenizer ? createTextStream(tokenizer) : null;
  // A model's vocabulary may have more rows than its tokenizer has ids (padding): as Python's
  // tokenizers do, such ids decode to no text.
  const known = (id: number) => id < tokenizer!.vocabSize;
  let tail = ""; // the end of the text so far, where a stop string may begin
  const longestStop = Math.max(0, ...stop.strings.map((s) => s.length));
  const c = model.config;
  const speculative = options.mode === "speculative";
  const k = speculative ? options.blockSize ?? defaultBlockSize(c) : 1;
  const sampling = samplingOf(options);
  const release = model.acquire();
  const alive = () => {
    if (model.disposed) throw new ModelStateError("the model was disposed during generation");
  };
  const t0 = performance.now();
  let session: Session | null = null;
  let batches: Batches | null = null;
  try {
    session = new Session(model, {
      k,
      drafts: k > 1 ? options.drafts ?? headDraftSource() : null,
      promptLength: prompt.length,
      timestamps: options.timestamps,
      sampling,
    });
    const p = prompt.length;
    const limit = Math.min(p + options.maxTokens, c.maxSeqLen);
    session.start(prompt, { limit, stop: stop.ids });
    await model.gpu.device.queue.onSubmittedWorkDone();
    alive();
    model.gpu.check("prefill");
    const t1 = performance.now();

    // Every step emits at least one token, so limit - p steps always suffice.
    batches = new Batches(session, { steps: limit - p, alive });
    let emitted = 0;
    let last: Snapshot | null = null;
    let gpuBegin: bigint | null = null;
    let t2 = 0;
    let stopped = false;
    for (let snap = await batches.next(); snap !== null; snap = await batches.next()) {
      if (t2 !== 0) continue; // finished: the batches still in flight are drained, not read
      last = snap;
      batches.pace((performance.now() - t1) / Math.max(1, snap.state[S.STEPS]));
      gpuBegin ??= snap.gpuBegin;
      const len = snap.state[S.LEN];
      if (len > p + emitted) {
        let ids = Array.from(snap.tokens.subarray(p + emitted, len));
        let chunkText: string | undefined;
        if (text && stop.strings.length === 0) chunkText = text.push(ids.filter(known));
        else if (text) {
          // Id by id, so the output ends with the token that completes a stop string.
          chunkText = "";
          for (let i = 0; i < ids.length && !stopped; i++) {
            const piece = known(ids[i]) ? text.push([ids[i]]) : "";
            const seen = tail + piece;
            const at = Math.min(...stop.strings.map((s) => {
              const j = seen.indexOf(s);
              return j < 0 ? Infinity : j + s.length;
            }));
            if (at !== Infinity) {
              chunkText += piece.slice(0, at - tail.length);
              ids = ids.slice(0, i + 1);
              stopped = true;
            } else {
              chunkText += piece;
              tail = seen.slice(-Math.max(0, longestStop - 1)) || "";
            }
          }
        }
        emitted += ids.length;
        yield chunkText === undefined ? { ids } : { ids, text: chunkText };
        alive();
      }
      if (stopped || snap.state[S.DONE] !== 0 || len >= limit || options.signal?.aborted) {
        t2 = performance.now(); // the last token is in the caller's hands
        batches.stop();
      }
    }
    if (options.signal?.aborted) {
      throw new AbortedError(`generation aborted after ${emitted} tokens`);
    }
    const stats = generationStats({
      state: last!.state,
      tokens: emitted,
      nFuture: c.nFuture,
      k,
      hostSyncs: batches.hostSyncs + 1, // + the prefill's wait
      times: [t0, t1, t2 || performance.now()],
      gpu: [gpuBegin, last!.gpuEnd],
      dispatchesPerStep: session.step.length,
      draftDispatchesPerStep: session.draftDispatches,
    });
    return sampling ? { ...stats, seed: sampling.seed } : stats;
  } catch (e) {
    if (model.disposed) throw new ModelStateError("the model was disposed during generation");
    throw e;
  } finally {
    if (!model.disposed) {
      await batches?.drain();
      // Let submitted work finish before its buffers go.
      await model.gpu.device.queue.onSubmittedWorkDone();
    }
    session?.dispose();
    release();
  }
}

/**
 * Generates and collects all tokens (and their text, with a tokenizer), with statistics.
 *
 * @example
 * ```ts
 * import { complete, createModel } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 64 });
 * const { tokens, stats } = await complete(model, [1, 2, 3], { maxTokens: 8 });
 * console.log(tokens.length, stats.tokensPerSecond);
 * model.dispose();
 * ```
 */
export async function complete(
  model: Model,
  prompt: Prompt,
  options: GenerateOptions,
): Promise<Completion> {
  const it = generate(model, prompt, options);
  const tokens: number[] = [];
  let text: string | undefined;
  for (;;) {
    const r = await it.next();
    if (r.done) {
      return text === undefined ? { tokens, stats: r.value } : { tokens, text, stats: r.value };
    }
    tokens.push(...r.value.ids);
    if (r.value.text !== undefined) text = (text ?? "") + r.value.text;
  }
}
