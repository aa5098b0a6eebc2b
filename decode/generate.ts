/**
 * Generation: greedy or self-speculative, with the decode loop on the GPU. The host records
 * batches of steps ahead, submits them without waiting, and reads tokens back through a ring of
 * buffers mapped asynchronously; no map waits on the per-step critical path.
 * @module
 */
import { AbortedError, InvalidInputError } from "../gpu/errors.ts";
import type { Model } from "../model/model.ts";
import { type DraftSource, headDraftSource } from "./drafts.ts";
import { type Readback, Session, type Snapshot } from "./session.ts";
import { MAX_STOP_IDS, S } from "./state.ts";

/**
 * Options of {@link generate} and {@link complete}.
 *
 * @example
 * ```ts
 * import type { GenerateOptions } from "@ahead/mtp";
 * const options: GenerateOptions = { maxTokens: 128, stop: [2], mode: "speculative" };
 * ```
 */
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
  /** Rows verified per step in speculative mode; default the model's nFuture. */
  blockSize?: number;
  /** Record GPU timestamps per batch of steps (when the device supports them). */
  timestamps?: boolean;
}

/**
 * Statistics of one generation.
 *
 * @example
 * ```ts
 * import { createModel, complete } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 64 });
 * const { stats } = await complete(model, [1, 2], { maxTokens: 10, mode: "speculative" });
 * console.log(stats.steps, stats.tokensPerStep, stats.headAcceptance);
 * model.dispose();
 * ```
 */
export interface GenerationStats {
  /** Forward passes after the prompt (decode steps). */
  steps: number;
  /** Tokens generated. */
  tokens: number;
  /**
   * tokens / steps: tokens emitted per forward pass after the prompt, the verifier's own bonus
   * token included, so greedy decoding gives exactly 1 and speculative at most nFuture.
   */
  tokensPerStep: number;
  /** tokens / decodeSeconds. */
  tokensPerSecond: number;
  /**
   * One rate per head: head 1 (the trunk's own token) is always 1; head j >= 2 is the fraction of
   * its drafts that the verifier accepted (draft j is accepted only if drafts 2..j-1 were). Heads
   * that proposed nothing (greedy mode) have rate 0.
   */
  headAcceptance: number[];
  /** Host-GPU synchronisations (buffer maps and waits), none of them per step. */
  hostSyncs: number;
  /** Seconds from the call to the prompt being processed. */
  prefillSeconds: number;
  /** Seconds from the prompt being processed to the last token being read back. */
  decodeSeconds: number;
  /** GPU time of the decode steps from timestamps (gaps between batches included), if recorded. */
  gpuDecodeSeconds: number | null;
  /** Kernel launches per decode step. */
  dispatchesPerStep: number;
}

/**
 * Result of {@link complete}.
 *
 * @example
 * ```ts
 * import type { Completion } from "@ahead/mtp";
 * const show = (c: Completion) => `${c.tokens.length} tokens, ${c.stats.tokensPerStep} per step`;
 * ```
 */
export interface Completion {
  /** The generated token ids (the prompt excluded). */
  tokens: number[];
  /** Decoded text, once a tokenizer exists. */
  text?: string;
  /** Statistics of the generation. */
  stats: GenerationStats;
}

/**
 * Batches mapped but not yet read. A map resolves ~10 ms after it is called, so the host reads
 * one batch behind while the GPU runs the next; batches are sized to take about
 * BATCH_TARGET_MS of GPU time, so that the GPU never waits for the host and the host learns of
 * the end (the done flag) at most about one batch late.
 */
export const MAP_LAG = 2;
const BATCH_TARGET_MS = 15;
/** Fewest decode steps per submitted batch: at most one host sync per this many steps. */
export const MIN_BATCH_STEPS = 4;
const MAX_BATCH_STEPS = 64;

function validate(model: Model, prompt: readonly number[], o: GenerateOptions): void {
  const c = model.config;
  if (!Array.isArray(prompt) || prompt.length === 0) {
    throw new InvalidInputError("prompt must be a non-empty array of token ids");
  }
  if (prompt.length >= c.maxSeqLen) {
    throw new InvalidInputError(
      `prompt has ${prompt.length} tokens but maxSeqLen is ${c.maxSeqLen}: shorten the prompt to ` +
        `at most ${c.maxSeqLen - 1} tokens or use a model with a longer maxSeqLen`,
    );
  }
  const bad = prompt.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= c.vocabSize);
  if (bad >= 0) {
    throw new InvalidInputError(
      `prompt[${bad}] = ${
        prompt[bad]
      } is not a token id: ids must be integers in [0, ${c.vocabSize})`,
    );
  }
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) {
    throw new InvalidInputError(`maxTokens must be an integer >= 1, got ${o.maxTokens}`);
  }
  const stop = o.stop ?? [];
  if (stop.length > MAX_STOP_IDS) {
    throw new InvalidInputError(
      `at most ${MAX_STOP_IDS} stop ids are supported, got ${stop.length}`,
    );
  }
  const badStop = stop.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= c.vocabSize);
  if (badStop >= 0) {
    throw new InvalidInputError(
      `stop[${badStop}] = ${stop[badStop]} is not a token id: ids must be in [0, ${c.vocabSize})`,
    );
  }
  if (o.mode !== undefined && o.mode !== "greedy" && o.mode !== "speculative") {
    throw new InvalidInputError(`mode must be "greedy" or "speculative", got ${String(o.mode)}`);
  }
  if (
    o.blockSize !== undefined &&
    (!Number.isInteger(o.blockSize) || o.blockSize < 1 || o.blockSize > 8)
  ) {
    throw new InvalidInputError(`blockSize must be an integer in [1, 8], got ${o.blockSize}`);
  }
  if (
    o.mode === "speculative" && !o.drafts && o.blockSize !== undefined && o.blockSize !== c.nFuture
  ) {
    throw new InvalidInputError(
      `with the model's heads as drafts the block size is nFuture (${c.nFuture}); got ${o.blockSize}`,
    );
  }
  if (o.mode === "speculative" && !o.drafts && c.nFuture > 8) {
    throw new InvalidInputError(
      `speculative decoding verifies at most 8 rows; nFuture is ${c.nFuture}`,
    );
  }
  if (o.signal?.aborted) throw new AbortedError("the signal was aborted before generation started");
}

/**
 * Generates tokens after `prompt`, yielding chunks of token ids as they are read back. The
 * generator's return value is the {@link GenerationStats}.
 *
 * @throws {InvalidInputError} for a bad prompt or options; {@link AbortedError} when aborted.
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
  const gpu = model.gpu;
  const speculative = options.mode === "speculative";
  const drafts = speculative ? options.drafts ?? headDraftSource() : null;
  const k = speculative ? options.blockSize ?? c.nFuture : 1;
  const release = model.acquire();
  const t0 = performance.now();
  const session = new Session(model, {
    k,
    drafts: k > 1 ? drafts : null,
    promptLength: prompt.length,
    timestamps: options.timestamps,
  });
  const p = prompt.length;
  const limit = Math.min(p + options.maxTokens, c.maxSeqLen);
  let hostSyncs = 0;
  const ring: Readback[] = Array.from({ length: MAP_LAG + 3 }, () => session.readback());
  const mapping: { slot: Readback; steps: number; done: Promise<void> }[] = [];
  try {
    session.start(prompt, { limit, stop: options.stop ?? [] });
    await gpu.device.queue.onSubmittedWorkDone();
    hostSyncs++;
    gpu.check("prefill");
    const t1 = performance.now();

    let stepsLeft = limit - p; // every step emits at least one token
    let batchSteps = MIN_BATCH_STEPS;
    let batchIndex = 0;
    let finished = false;
    const encodeBatch = () => {
      if (stepsLeft <= 0 || finished) return null;
      const steps = Math.min(batchSteps, stepsLeft);
      stepsLeft -= steps;
      const slot = ring[batchIndex++ % ring.length];
      return { slot, steps, cb: session.encodeSteps(steps, slot) };
    };
    let inflight = encodeBatch();
    gpu.device.queue.submit([inflight!.cb]);
    let ready = encodeBatch();
    let emitted = 0;
    let last: Snapshot | null = null;
    let gpuBegin: bigint | null = null;
    let gpuEnd: bigint | null = null;
    let t2 = 0;
    while (inflight || mapping.length > 0) {
      if (inflight) {
        // Returns once the GPU is idle, i.e. once `inflight` ran: only then submit the next batch.
        mapping.push({
          slot: inflight.slot,
          steps: inflight.steps,
          done: inflight.slot.buffer.mapAsync(GPUMapMode.READ),
        });
        hostSyncs++;
        if (ready && !finished) {
          gpu.device.queue.submit([ready.cb]);
          inflight = ready;
          ready = encodeBatch();
        } else inflight = null;
        gpu.check("decode");
      }
      while (mapping.length > (inflight ? MAP_LAG - 1 : 0)) {
        const m = mapping.shift()!;
        await m.done;
        gpu.check("decode");
        const snap = session.snapshot(m.slot);
        if (finished) continue;
        last = snap;
        // Size later batches from the step time seen so far.
        const msPerStep = (performance.now() - t1) / Math.max(1, snap.state[S.STEPS]);
        batchSteps = Math.max(
          MIN_BATCH_STEPS,
          Math.min(MAX_BATCH_STEPS, Math.round(BATCH_TARGET_MS / msPerStep)),
        );
        gpuBegin ??= snap.gpuBegin;
        gpuEnd = snap.gpuEnd;
        const len = snap.state[S.LEN];
        if (len > p + emitted) {
          const chunk = Array.from(snap.tokens.subarray(p + emitted, len));
          emitted += chunk.length;
          yield chunk;
        }
        if (snap.state[S.DONE] !== 0 || len >= limit) {
          finished = true;
          t2 = performance.now(); // the last token is in the caller's hands
        }
        if (options.signal?.aborted) {
          finished = true;
          ready = null;
        }
      }
    }
    if (options.signal?.aborted) {
      throw new AbortedError(`generation aborted after ${emitted} tokens`);
    }
    if (t2 === 0) t2 = performance.now();
    const st = last!.state;
    const steps = st[S.STEPS];
    const headAcceptance = [1];
    for (let j = 0; j < c.nFuture - 1; j++) {
      const proposed = j < k - 1 ? st[S.PROPOSED + j] : 0;
      headAcceptance.push(proposed ? st[S.ACCEPTED + j] / proposed : 0);
    }
    const decodeSeconds = (t2 - t1) / 1000;
    return {
      steps,
      tokens: emitted,
      tokensPerStep: steps ? emitted / steps : 0,
      tokensPerSecond: emitted / decodeSeconds,
      headAcceptance,
      hostSyncs,
      prefillSeconds: (t1 - t0) / 1000,
      decodeSeconds,
      gpuDecodeSeconds: gpuBegin !== null && gpuEnd !== null
        ? Number(gpuEnd - gpuBegin) / 1e9
        : null,
      dispatchesPerStep: session.step.length,
    };
  } finally {
    // Let every outstanding map finish before the buffers go.
    for (const m of mapping) {
      try {
        await m.done;
        m.slot.buffer.unmap();
      } catch { /* the map failed: nothing to unmap */ }
    }
    await gpu.device.queue.onSubmittedWorkDone();
    session.dispose();
    release();
  }
}

/**
 * Generates and collects all tokens, with statistics.
 *
 * @example
 * ```ts
 * import { createModel, complete } from "@ahead/mtp";
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
