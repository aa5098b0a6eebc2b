/**
 * Draft sources: what proposes tokens 2..k of each verified block. The verifier makes the output
 * identical to greedy decoding whatever the drafts are; a better source only means fewer steps.
 * @module
 */
import type { Tensor } from "../gpu/arena.ts";
import type { Dispatch } from "../kernels/dispatch.ts";
import { NO_TOKEN, S } from "../kernels/state.ts";
import type { Block } from "../heads/kind.ts";
import type { Model } from "../heads/model.ts";
import type { ForwardContext } from "../model/trunk.ts";
import { replay } from "./replay.ts";
import { lookup } from "./lookup.ts";
import { InvalidInputError } from "../gpu/errors.ts";

/** What a draft source gets to build its GPU work for one generation. */
export interface DraftHost {
  /** The model. */
  model: Model;
  /** The generation's arena, config, RoPE table and `done` flag. */
  ctx: ForwardContext;
  /** [S.WORDS] u32: the decode state (kernels/state.ts). */
  state: Tensor;
  /** [k] u32: token ids of the block; row 0 is the last accepted token, rows 1.. the drafts. */
  ids: Tensor;
  /** Rows per verified block: 1 + drafts per step. */
  k: number;
  /** Tokens in the prompt. */
  promptLength: number;
  /** [k] u32: positions of the block's rows. */
  positions: Tensor;
  /** [capacity] u32: the sequence, prompt then generated tokens. */
  tokens: Tensor;
}

/** A draft source attached to one generation; all buffers it makes belong to the generation. */
export interface AttachedDrafts {
  /** Drafts of the first step (k - 1 ids, NO_TOKEN where there is none). */
  firstDrafts: number[];
  /** Launches over a block before the verifier moves on (prefill chunks too). */
  beforeVerify(b: Block): Dispatch[];
  /** Launches after the verifier that write ids[1 .. k-1] for the next step. */
  afterVerify(b: Block): Dispatch[];
}

/**
 * A source of draft tokens for self-speculative decoding.
 *
 * @example
 * ```ts
 * import { complete, createModel, replayDrafts } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 64 });
 * const greedy = await complete(model, [1, 2, 3], { maxTokens: 8 });
 * const r = await complete(model, [1, 2, 3], { maxTokens: 8, mode: "speculative", drafts: replayDrafts(greedy.tokens) });
 * console.log(r.stats.tokensPerStep); // 4: every draft was right
 * model.dispose();
 * ```
 */
export interface DraftSource {
  /** A short name for stats and benchmarks. */
  readonly name: string;
  /** Builds the per-generation GPU work. */
  attach(host: DraftHost): AttachedDrafts;
}

/** The model's own heads 2..nFuture: the default source of `mode: "speculative"`. */
export function headDraftSource(): DraftSource {
  return {
    name: "heads",
    attach({ model, ctx, state, ids, k, positions, tokens }) {
      const run = model.kind.attach(ctx, model.trunk, model.heads, k);
      return {
        firstDrafts: new Array(k - 1).fill(NO_TOKEN),
        beforeVerify: (b) => run.block(b),
        afterVerify: (b) =>
          run.draft({
            s: b.s,
            row: { buffer: state.buffer, at: S.HEAD_ROW },
            ids,
            positions,
            tokens,
          }),
      };
    },
  };
}

/** Options of {@link lookupDrafts} and {@link headsAndLookup}. */
export interface LookupOptions {
  /** Longest n-gram looked up, >= 1 (default 3). */
  ngram?: number;
  /** Shortest n-gram tried before giving up, in [1, ngram] (default 1; 2 for headsAndLookup). */
  minNgram?: number;
}

function lookupSizes(o: LookupOptions, minDefault: number): { maxN: number; minN: number } {
  const maxN = o.ngram ?? 3, minN = o.minNgram ?? Math.min(minDefault, maxN);
  if (!Number.isInteger(maxN) || maxN < 1) {
    throw new InvalidInputError(`ngram must be an integer >= 1, got ${maxN}`);
  }
  if (!Number.isInteger(minN) || minN < 1 || minN > maxN) {
    throw new InvalidInputError(`minNgram must be an integer in [1, ngram = ${maxN}], got ${minN}`);
  }
  return { maxN, minN };
}

/**
 * Prompt-lookup drafts (speculative edits): the last tokens of the sequence are looked up in
 * the whole sequence, prompt and output so far, on the GPU; what followed their latest earlier
 * occurrence is proposed. Where the output repeats the input (rewriting a file, quoting), most
 * drafts are right.
 *
 * @throws {InvalidInputError} for an n-gram size < 1.
 * @example
 * ```ts
 * import { complete, createModel, lookupDrafts } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 128 });
 * const prompt = [5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 7];
 * const r = await complete(model, prompt, { maxTokens: 32, mode: "speculative", drafts: lookupDrafts(), blockSize: 8 });
 * console.log(r.stats.tokensPerStep);
 * model.dispose();
 * ```
 */
export function lookupDrafts(o: LookupOptions = {}): DraftSource {
  const { maxN, minN } = lookupSizes(o, 1);
  return {
    name: "lookup",
    attach({ ctx, state, ids, k, tokens }) {
      return {
        firstDrafts: new Array(k - 1).fill(NO_TOKEN),
        beforeVerify: () => [],
        afterVerify: () => lookup(ctx.arena, { state, tokens, ids, k, maxN, minN }),
      };
    },
  };
}

/**
 * The model's heads, and prompt lookup where the context repeats: each step the lookup's drafts
 * replace the heads' when the last `minNgram` (default 2) or more tokens occurred before, whose
 * continuation is then expected to be accepted for longer than the heads' guesses.
 *
 * @throws {InvalidInputError} for an n-gram size < 1.
 */
export function headsAndLookup(o: LookupOptions = {}): DraftSource {
  const { maxN, minN } = lookupSizes(o, 2);
  const heads = headDraftSource();
  return {
    name: "heads + lookup",
    attach(host) {
      const h = heads.attach(host);
      const { ctx, state, ids, k, tokens } = host;
      return {
        firstDrafts: h.firstDrafts,
        beforeVerify: (b) => h.beforeVerify(b),
        afterVerify: (b) => [
          ...h.afterVerify(b),
          ...lookup(ctx.arena, { state, tokens, ids, k, maxN, minN, keepUnlessFound: true }),
        ],
      };
    },
  };
}

/**
 * A source that proposes a fixed continuation of the prompt: with the true greedy continuation
 * every draft is accepted, which measures the ceiling of k-token verification; with a wrong one
 * every draft is rejected. Either way the output equals greedy decoding.
 */
export function replayDrafts(continuation: readonly number[]): DraftSource {
  const tokens = Uint32Array.from(continuation);
  return {
    name: "replay",
    attach({ ctx, state, ids, k, promptLength }) {
      const buf = ctx.arena.tensor(
        "replay continuation",
        [Math.max(1, tokens.length)],
        "u32",
        tokens.length ? tokens : new Uint32Array(1),
      );
      return {
        firstDrafts: Array.from(
          { length: k - 1 },
          (_, j) => j < tokens.length ? tokens[j] : NO_TOKEN,
        ),
        beforeVerify: () => [],
        afterVerify: () =>
          replay(ctx.arena, {
            state,
            continuation: buf,
            count: tokens.length,
            promptLen: promptLength,
            ids,
            k,
          }),
      };
    },
  };
}
