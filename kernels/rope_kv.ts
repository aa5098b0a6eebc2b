import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, makeDispatch } from "./dispatch.ts";
import code from "./rope_kv.wgsl" with { type: "text" };

/** Attention geometry shared by the RoPE/KV-write and attention kernels. */
export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Positions the KV cache holds. */
  capacity: number;
}

/**
 * Rotates the query and key parts of `qkv` rows (positions state.pos + r) with RoPE, queries in
 * place, and stores the rotated keys and the values into the KV cache.
 */
export function ropeKv(
  gpu: Gpu,
  o: AttentionShape & {
    state: GPUBuffer;
    /** [capacity, headDim/2] (cos, sin) pairs, see {@link ropeTable}. */
    rope: GPUBuffer;
    qkv: GPUBuffer;
    kCache: GPUBuffer;
    vCache: GPUBuffer;
    rows: number;
    label?: string;
  },
): Dispatch {
  const threads = (o.nHeads + o.nKvHeads) * o.headDim / 2 + o.nKvHeads * o.headDim;
  return makeDispatch(gpu, {
    kernel: "rope_kv",
    code,
    params: [o.rows, o.nHeads, o.nKvHeads, o.headDim, o.capacity],
    buffers: [
      [o.state, "read"],
      [o.rope, "read"],
      [o.qkv, "write"],
      [o.kCache, "write"],
      [o.vCache, "write"],
    ],
    workgroups: [Math.ceil(threads / 256), o.rows],
    label: o.label ?? "rope_kv",
  });
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
