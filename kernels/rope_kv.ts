import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** Attention geometry shared by the RoPE/KV-write and attention kernels. */
export interface AttentionShape {
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (grouped-query attention when fewer than nHeads). */
  nKvHeads: number;
  /** Width of one head. */
  headDim: number;
  /** Positions the KV cache holds. */
  capacity: number;
}

/**
 * Rotates the query and key parts of `qkv` rows with RoPE at the rows' positions (a u32 tensor,
 * one per row), queries in place, and stores the rotated keys and the values into the KV cache
 * at those positions. Rows at positions >= capacity are skipped.
 */
export function ropeKv(
  arena: Arena,
  o: AttentionShape & {
    positions: Tensor;
    /** [capacity, headDim/2] (cos, sin) pairs, see {@link ropeTable}. */
    rope: Tensor;
    qkv: Tensor;
    kCache: Tensor;
    vCache: Tensor;
    rows: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const threads = (o.nHeads + o.nKvHeads) * o.headDim / 2 + o.nKvHeads * o.headDim;
  const cache = o.capacity * o.nKvHeads * o.headDim;
  return [makeDispatch(arena, {
    kernel: "rope_kv",
    code: wgsl.ropeKv,
    params: [o.rows, o.nHeads, o.nKvHeads, o.headDim, o.capacity],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["positions", o.positions, "read", o.rows],
      ["rope", o.rope, "read", o.capacity * o.headDim],
      ["qkv", o.qkv, "write", o.rows * (o.nHeads + 2 * o.nKvHeads) * o.headDim],
      ["kCache", o.kCache, "write", cache],
      ["vCache", o.vCache, "write", cache],
    ],
    workgroups: [Math.ceil(threads / 256), o.rows],
    label: o.label ?? "rope_kv",
  })];
}

/** cos/sin of position p and frequency i (theta^(-2i/headDim)), computed in f64. */
export function ropeTable(capacity: number, headDim: number, theta: number): Float32Array {
  const half = headDim / 2;
  const t = new Float32Array(capacity * half * 2);
  for (let p = 0; p < capacity; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(theta, -(2 * i) / headDim);
      t[(p * half + i) * 2] = Math.cos(angle);
      t[(p * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  return t;
}
