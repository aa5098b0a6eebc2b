import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import { type Dispatch, doneFlag, f32bits, makeDispatch } from "./dispatch.ts";
import type { AttentionShape } from "./rope_kv.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Chunks a decode attention row is split into for a cache of `capacity` positions: about one per
 * 32 positions, at most 32 (the chunk length follows the row's current length). It depends on the
 * capacity only, never on the block size, so positions get the same bits in every block.
 */
export function attentionSplits(capacity: number): number {
  return Math.max(1, Math.min(32, Math.ceil(capacity / 32)));
}

/**
 * Causal grouped-query attention of `rows` query rows (row r at positions[r], attending to
 * positions 0..positions[r]) over the KV cache. Phase 1 spreads (head, row, chunk of positions)
 * over workgroups into `partial`, phase 2 merges the chunks. A few rows (decode, verify) split
 * each row into `splits` chunks (default {@link attentionSplits} of the capacity) to fill the
 * GPU; long blocks (prefill) pass `splits: 1`, their rows are parallelism enough. `partial`
 * holds rows * nHeads * splits * (2 + headDim) floats.
 */
export function attention(
  arena: Arena,
  o: AttentionShape & {
    positions: Tensor;
    qkv: Tensor;
    kCache: Tensor;
    vCache: Tensor;
    partial: Tensor;
    out: Tensor;
    rows: number;
    /** Chunks per row (at most 32); default attentionSplits(capacity). */
    splits?: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const label = o.label ?? "attention";
  if (o.headDim > 256 || o.headDim % 4 !== 0) {
    throw new ShapeError(`${label}: headDim must be <= 256 and a multiple of 4, got ${o.headDim}`);
  }
  const splits = o.splits ?? attentionSplits(o.capacity);
  if (splits < 1 || splits > 32) {
    throw new ShapeError(`${label}: splits must be in [1, 32], got ${splits}`);
  }
  const cache = o.capacity * o.nKvHeads * o.headDim;
  const partial = o.rows * o.nHeads * splits * (2 + o.headDim);
  const done = doneFlag(arena.gpu, o.done);
  const positions = ["positions", o.positions, "read", o.rows] as const;
  return [
    makeDispatch(arena, {
      kernel: "attention",
      code: wgsl.attention,
      params: [
        o.rows,
        o.nHeads,
        o.nKvHeads,
        o.headDim,
        o.capacity,
        f32bits(1 / Math.sqrt(o.headDim)),
        splits,
      ],
      bindings: [
        done,
        [...positions],
        ["qkv", o.qkv, "read", o.rows * (o.nHeads + 2 * o.nKvHeads) * o.headDim],
        ["kCache", o.kCache, "read", cache],
        ["vCache", o.vCache, "read", cache],
        ["partial", o.partial, "write", partial],
      ],
      workgroups: [o.nHeads, o.rows, splits],
      label,
    }),
    makeDispatch(arena, {
      kernel: "attention_combine",
      code: wgsl.attentionCombine,
      params: [o.rows, o.nHeads, o.headDim, o.capacity, splits],
      bindings: [
        done,
        [...positions],
        ["partial", o.partial, "read", partial],
        ["out", o.out, "write", o.rows * o.nHeads * o.headDim],
      ],
      workgroups: [o.nHeads, o.rows],
      label: `${label}.combine`,
    }),
  ];
}
