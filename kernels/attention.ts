import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, f32bits, makeDispatch } from "./dispatch.ts";
import type { AttentionShape } from "./rope_kv.ts";
import code from "./attention.wgsl" with { type: "text" };
import combineCode from "./attention_combine.wgsl" with { type: "text" };

/**
 * Chunks a decode attention row is split into for a cache of `capacity` positions: about one per
 * 32 positions, at most 32 (the chunk length follows the row's current length). It depends on the
 * capacity only, never on the block size, so positions get the same bits in every block.
 */
export function attentionSplits(capacity: number): number {
  return Math.max(1, Math.min(32, Math.ceil(capacity / 32)));
}

/**
 * Causal grouped-query attention of `rows` query rows (row r at position state.pos + r) over the
 * KV cache. Phase 1 spreads (head, row, chunk of positions) over workgroups into `partial`, phase 2
 * merges the chunks. A few rows (decode, verify) split each row into `splits` chunks (default
 * {@link attentionSplits} of the capacity) to fill the GPU; long blocks (prefill) pass `splits: 1`,
 * their rows are parallelism enough. `partial` holds rows * nHeads * splits * (2 + headDim) f32.
 */
export function attention(
  gpu: Gpu,
  o: AttentionShape & {
    state: GPUBuffer;
    qkv: GPUBuffer;
    kCache: GPUBuffer;
    vCache: GPUBuffer;
    partial: GPUBuffer;
    out: GPUBuffer;
    rows: number;
    /** Chunks per row (at most 32); default attentionSplits(capacity). */
    splits?: number;
    label?: string;
  },
): Dispatch[] {
  if (o.headDim > 256 || o.headDim % 4 !== 0) {
    throw new RangeError(`attention needs headDim <= 256 and a multiple of 4, got ${o.headDim}`);
  }
  const splits = o.splits ?? attentionSplits(o.capacity);
  if (splits < 1 || splits > 32) {
    throw new RangeError(`attention: splits must be in [1, 32], got ${splits}`);
  }
  const label = o.label ?? "attention";
  return [
    makeDispatch(gpu, {
      kernel: "attention",
      code,
      params: [
        o.rows,
        o.nHeads,
        o.nKvHeads,
        o.headDim,
        o.capacity,
        f32bits(1 / Math.sqrt(o.headDim)),
        splits,
      ],
      buffers: [
        [o.state, "read"],
        [o.qkv, "read"],
        [o.kCache, "read"],
        [o.vCache, "read"],
        [o.partial, "write"],
      ],
      workgroups: [o.nHeads, o.rows, splits],
      label,
    }),
    makeDispatch(gpu, {
      kernel: "attention_combine",
      code: combineCode,
      params: [o.rows, o.nHeads, o.headDim, o.capacity, splits],
      buffers: [[o.state, "read"], [o.partial, "read"], [o.out, "write"]],
      workgroups: [o.nHeads, o.rows],
      label: `${label}.combine`,
    }),
  ];
}
