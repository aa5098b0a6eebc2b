/**
 * Draft sources: what proposes tokens 2..k of each verified block. The verifier makes the output
 * identical to greedy decoding whatever the drafts are; a better source only means fewer steps.
 * @module
 */
import type { Dispatch } from "../kernels/dispatch.ts";
import type { ForwardContext } from "../model/trunk.ts";
import { replay } from "../kernels/decode_ops.ts";
import { allocKv, allocScratch, type Scratch } from "../model/trunk.ts";
import type { Weights } from "../model/weights.ts";
import { headDrafts, headLayers } from "../heads/heads.ts";
import { NO_TOKEN } from "./state.ts";

/**
 * What a draft source gets to build its GPU work for one generation.
 *
 * @example
 * ```ts
 * import type { DraftHost } from "@ahead/mtp";
 * const draftsPerStep = (host: DraftHost) => host.k - 1;
 * ```
 */
export interface DraftHost {
  /** Device, config, state buffer and RoPE table of the generation. */
  ctx: ForwardContext;
  /** The model's weights. */
  weights: Weights;
  /** [k] token ids of the block: row 0 is the last accepted token, rows 1.. the drafts. */
  ids: GPUBuffer;
  /** Rows per verified block: 1 + drafts per step. */
  k: number;
  /** Tokens in the prompt. */
  promptLength: number;
}

/**
 * A draft source attached to one generation; all buffers it makes are freed with it.
 *
 * @example
 * ```ts
 * import type { AttachedDrafts } from "@ahead/mtp";
 * // A source that never proposes anything: every step emits exactly one token.
 * const none = (k: number): AttachedDrafts => ({
 *   firstDrafts: new Array(k - 1).fill(0xffffffff),
 *   beforeVerify: () => [],
 *   afterVerify: () => [],
 * });
 * ```
 */
export interface AttachedDrafts {
  /** Drafts of the first step (k - 1 ids, NO_TOKEN where there is none). */
  firstDrafts: number[];
  /** Launches over a block before the verifier moves the position (prefill chunks too). */
  beforeVerify(s: Scratch): Dispatch[];
  /** Launches after the verifier that write ids[1 .. k-1] for the next step. */
  afterVerify(s: Scratch): Dispatch[];
}

/**
 * A source of draft tokens for self-speculative decoding.
 *
 * @example
 * ```ts
 * import { createModel, complete, replayDrafts } from "@ahead/mtp";
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
  /** Builds the per-generation GPU work. Called inside the generation's buffer scope. */
  attach(host: DraftHost): AttachedDrafts;
}

/**
 * The model's own heads 2..nFuture: the default source of `mode: "speculative"`.
 *
 * @example
 * ```ts
 * import { headDraftSource } from "@ahead/mtp";
 * console.log(headDraftSource().name); // "heads"
 * ```
 */
export function headDraftSource(): DraftSource {
  return {
    name: "heads",
    attach(host) {
      const { ctx, weights: w } = host;
      const c = ctx.config;
      const nh = host.k - 1;
      const kv = allocKv(ctx.gpu, c, ctx.capacity, w.headLayers.length);
      const zFor = new Map<number, GPUBuffer[]>();
      const z = (rows: number) => {
        let b = zFor.get(rows);
        if (!b) {
          b = w.headLayers.map((_, j) =>
            ctx.gpu.storage(`mtp_heads.${j}.out[${rows}]`, rows * c.dModel * 4)
          );
          zFor.set(rows, b);
        }
        return b;
      };
      const sel = allocScratch(ctx.gpu, c, nh, ctx.capacity);
      const logits = ctx.gpu.storage("head logits", nh * c.vocabSize * 4);
      return {
        firstDrafts: new Array(nh).fill(NO_TOKEN),
        beforeVerify: (s) => headLayers(ctx, w, { z: z(s.rows), h: s.h, kv, s }),
        afterVerify: (s) =>
          headDrafts(ctx, w, { ids: host.ids, h: s.h, z: z(s.rows), sel, logits }),
      };
    },
  };
}

/**
 * A source that proposes a fixed continuation of the prompt: with the true greedy continuation
 * every draft is accepted, which measures the ceiling of k-token verification; with a wrong one
 * every draft is rejected. Either way the output equals greedy decoding.
 *
 * @example
 * ```ts
 * import { replayDrafts } from "@ahead/mtp";
 * const source = replayDrafts([5, 6, 7]);
 * console.log(source.name); // "replay"
 * ```
 */
export function replayDrafts(continuation: readonly number[]): DraftSource {
  const tokens = Uint32Array.from(continuation);
  return {
    name: "replay",
    attach(host) {
      const { gpu, state } = host.ctx;
      const buf = gpu.storage("replay continuation", tokens.length ? tokens : new Uint32Array(1));
      const first = Array.from(
        { length: host.k - 1 },
        (_, j) => j < tokens.length ? tokens[j] : NO_TOKEN,
      );
      return {
        firstDrafts: first,
        beforeVerify: () => [],
        afterVerify: () => [replay(gpu, {
          state,
          continuation: buf,
          count: tokens.length,
          promptLen: host.promptLength,
          ids: host.ids,
          k: host.k,
        })],
      };
    },
  };
}
