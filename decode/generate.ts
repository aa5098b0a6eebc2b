/**
 * Generation: greedy or self-speculative, with the decode loop on the GPU. The host submits
 * batches of steps ahead and reads tokens back asynchronously (readback.ts); it reads as:
 * validate, start, then a loop of next snapshot / yield new tokens / stop check, then the stats.
 * @module
 */
import { AbortedError, describeValue, InvalidInputError, ModelStateError } from "../gpu/errors.ts";
import { MAX_FUTURE, MAX_STOP_IDS, S } from "../kernels/state.ts";
import type { Model } from "../heads/model.ts";
import { type DraftSource, headDraftSource } from "./drafts.ts";
import { Batches } from "./readback.ts";
import { Session, type Snapshot } from "./session.ts";
import { type GenerationStats, generationStats } from "./stats.ts";

/** Options of {@link generate} and {@link complete}. */
export interface GenerateOptions {
  /** Most tokens to generate (>= 1). Generation also ends at the model's maxSeqLen. */
  maxTokens: number;
  /** Token ids that end generation (the stop token is emitted, then nothing more), e.g. EOS. */
  stop?: readonly number[];
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
  /** Rows verified per step in speculative mode, in [1, 8]; default the model's nFuture. */
  blockSize?: number;
  /** Record GPU timestamps per batch of steps (when the device supports them). */
  timestamps?: boolean;
}

/** Result of {@link complete}. */
export interface Completion {
  /** The generated token ids (the prompt excluded). */
  tokens: number[];
  /** Statistics of the generation. */
  stats: GenerationStats;
}

const isId = (t: unknown, vocab: number) =>
  Number.isInteger(t) && (t as number) >= 0 && (t as number) < vocab;

function validate(model: Model, prompt: readonly number[], o: GenerateOptions): void {
  const c = model.config;
  if (!Array.isArray(prompt) || prompt.length === 0) {
    throw new InvalidInputError(
      `prompt must be a non-empty array of token ids, got ${describeValue(prompt)}`,
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
  if (typeof o !== "object" || o === null) {
    throw new InvalidInputError(
      `options must be an object with maxTokens, got ${describeValue(o)}`,
    );
  }
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) {
    throw new InvalidInputError(
      `maxTokens must be an integer >= 1, got ${describeValue(o.maxTokens)}`,
    );
  }
  const stop = o.stop ?? [];
  if (!Array.isArray(stop)) {
    throw new InvalidInputError(`stop must be an array of token ids, got ${describeValue(stop)}`);
  }
  if (stop.length > MAX_STOP_IDS) {
    throw new InvalidInputError(
      `at most ${MAX_STOP_IDS} stop ids are supported, got ${stop.length}`,
    );
  }
  const badStop = stop.findIndex((t) => !isId(t, c.vocabSize));
  if (badStop >= 0) {
    throw new InvalidInputError(
      `stop[${badStop}] = ${describeValue(stop[badStop])} is not a token id: ids must be in ` +
        `[0, ${c.vocabSize})`,
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
    o.mode === "speculative" && !o.drafts && o.blockSize !== undefined && o.blockSize !== c.nFuture
  ) {
    throw new InvalidInputError(
      `with the model's heads as drafts the block size is nFuture (${c.nFuture}); got ${o.blockSize}`,
    );
  }
  if (o.signal?.aborted) throw new AbortedError("the signal was aborted before generation started");
}

/**
 * Generates tokens after `prompt`, yielding chunks of token ids as they are read back. The
 * generator's return value is the {@link GenerationStats}.
 *
 * @throws {InvalidInputError} for a bad prompt or options; {@link AbortedError} when aborted;
 * {@link ModelStateError} when the model is disposed, before or during the generation.
 * @example
 * ```ts
 * import { createModel, generate } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 64 });
 * for await (const chunk of generate(model, [1, 2, 3], { maxTokens: 16, mode: "speculative" })) {
 *   console.log(chunk);
 * }
 * model.dispose();
 * ```
 */
export async function* generate(
  model: Model,
  prompt: readonly number[],
  options: GenerateOptions,
): AsyncGenerator<number[], GenerationStats, undefined> {
  validate(model, prompt, options);
  const c = model.config;
  const speculative = options.mode === "speculative";
  const k = speculative ? options.blockSize ?? c.nFuture : 1;
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
    });
    const p = prompt.length;
    const limit = Math.min(p + options.maxTokens, c.maxSeqLen);
    session.start(prompt, { limit, stop: options.stop ?? [] });
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
    for (let snap = await batches.next(); snap !== null; snap = await batches.next()) {
      if (t2 !== 0) continue; // finished: the batches still in flight are drained, not read
      last = snap;
      batches.pace((performance.now() - t1) / Math.max(1, snap.state[S.STEPS]));
      gpuBegin ??= snap.gpuBegin;
      const len = snap.state[S.LEN];
      if (len > p + emitted) {
        const chunk = Array.from(snap.tokens.subarray(p + emitted, len));
        emitted += chunk.length;
        yield chunk;
        alive();
      }
      if (snap.state[S.DONE] !== 0 || len >= limit || options.signal?.aborted) {
        t2 = performance.now(); // the last token is in the caller's hands
        batches.stop();
      }
    }
    if (options.signal?.aborted) {
      throw new AbortedError(`generation aborted after ${emitted} tokens`);
    }
    return generationStats({
      state: last!.state,
      tokens: emitted,
      nFuture: c.nFuture,
      k,
      hostSyncs: batches.hostSyncs + 1, // + the prefill's wait
      times: [t0, t1, t2 || performance.now()],
      gpu: [gpuBegin, last!.gpuEnd],
      dispatchesPerStep: session.step.length,
    });
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
 * Generates and collects all tokens, with statistics.
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
  prompt: readonly number[],
  options: GenerateOptions,
): Promise<Completion> {
  const it = generate(model, prompt, options);
  const tokens: number[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { tokens, stats: r.value };
    tokens.push(...r.value);
  }
}
