import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import { type Dispatch, doneFlag, f32bits, makeDispatch } from "./dispatch.ts";
import { type AttentionShape, kvCacheWords } from "./rope_kv.ts";
import { GEMV_MAX_ROWS } from "./gemv.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Chunks a decode attention row is split into for a cache of `capacity` positions: about one per
 * 32 positions, at most 32 (the chunk length follows the row's current length). It depends on the
 * capacity only, never on the block size, so positions get the same bits in every block.
 */
export function attentionSplits(capacity: number): number {
  return Math.max(1, Math.min(32, Math.ceil(capacity / 32)));
}

/** Fewest positions an attention chunk takes. */
export const ATTENTION_MIN_CHUNK = 16;

/** Floats of attention partials a long block may take (32 MB). */
const PARTIAL_BUDGET = 8 << 20;

/**
 * Chunks per row for a block of `rows` rows: {@link attentionSplits} for blocks of up to 8 rows
 * (decode and verify: the same for every block size, so rows keep their bits); longer blocks
 * (prefill, whole-sequence forwards) split as much while their partials fit in 32 MB. Splitting
 * long rows matters there too: one workgroup walking 500 positions is a chain of dependent
 * loads.
 */
export function blockSplits(
  rows: number,
  o: { capacity: number; nHeads: number; headDim: number },
): number {
  const splits = attentionSplits(o.capacity);
  if (rows <= GEMV_MAX_ROWS) return splits;
  const fit = Math.floor(PARTIAL_BUDGET / (rows * o.nHeads * (2 + o.headDim)));
  return Math.max(1, Math.min(splits, fit));
}

/**
 * Causal grouped-query attention of `rows` query rows (row r at positions[r], attending to
 * positions 0..positions[r]) over the KV cache, in one launch: workgroups over (head, row, chunk
 * of positions) write partial results into `partial`, and the last one of each (head, row) to
 * finish merges them into `out`. Rows split into `splits` chunks (default {@link blockSplits}).
 * `partial` holds rows * nHeads * splits *
 * (2 + headDim) floats; `arrived` holds rows * nHeads u32 counters, zero before the launch (a
 * fresh buffer) and zero after it.
 */
export function attention(
  arena: Arena,
  o: AttentionShape & {
    positions: Tensor;
    qkv: Tensor;
    kCache: Tensor;
    vCache: Tensor;
    /** Storage of the caches. Default "f32". */
    kvDtype?: "f32" | "f16";
    partial: Tensor;
    arrived: Tensor;
    out: Tensor;
    rows: number;
    /** Chunks per row (at most 32); default blockSplits(rows, capacity). */
    splits?: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const label = o.label ?? "attention";
  if (o.headDim > 256 || o.headDim % 4 !== 0) {
    throw new ShapeError(`${label}: headDim must be <= 256 and a multiple of 4, got ${o.headDim}`);
  }
  const splits = o.splits ?? blockSplits(o.rows, o);
  if (splits < 1 || splits > 32) {
    throw new ShapeError(`${label}: splits must be in [1, 32], got ${splits}`);
  }
  const cache = kvCacheWords(o);
  return [
    makeDispatch(arena, {
      kernel: "attention",
      code: wgsl.attention,
      constants: { KV_F16: o.kvDtype === "f16", HD: o.headDim, MIN_CHUNK: ATTENTION_MIN_CHUNK },
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
        doneFlag(arena.gpu, o.done),
        ["positions", o.positions, "read", o.rows],
        ["qkv", o.qkv, "read", o.rows * (o.nHeads + 2 * o.nKvHeads) * o.headDim],
        ["kCache", o.kCache, "read", cache],
        ["vCache", o.vCache, "read", cache],
        ["partial", o.partial, "write", o.rows * o.nHeads * splits * (2 + o.headDim)],
        ["arrived", o.arrived, "write", o.rows * o.nHeads],
        ["out", o.out, "write", o.rows * o.nHeads * o.headDim],
      ],
      workgroups: [o.nHeads, o.rows, splits],
      label,
    }),
  ];
}
