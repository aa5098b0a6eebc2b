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

/** Words one KV cache tensor takes: f32 values, or f16 pairs. */
export function kvCacheWords(o: AttentionShape & { kvDtype?: "f32" | "f16" }): number {
  const n = o.capacity * o.nKvHeads * o.headDim;
  return o.kvDtype === "f16" ? n / 2 : n;
}

/**
 * Rotates the query and key parts of `qkv` rows with RoPE at the rows' positions (a u32 tensor,
 * one per row), queries in place, and stores the rotated keys and the values into the KV cache
 * at those positions (as f32, or rounded to f16 with `kvDtype: "f16"`). Rows at positions >=
 * capacity are skipped.
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
    /** Storage of the caches. Default "f32". */
    kvDtype?: "f32" | "f16";
    rows: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const threads = (o.nHeads + o.nKvHeads) * o.headDim / 2 + o.nKvHeads * o.headDim;
  const cache = kvCacheWords(o);
  return [makeDispatch(arena, {
    kernel: "rope_kv",
    code: wgsl.ropeKv,
    constants: { KV_F16: o.kvDtype === "f16" },
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

/**
 * RoPE frequency scaling (Hugging Face `rope_scaling`). "linear" divides positions by `factor`;
 * "llama3" (Llama 3.1) divides the frequencies whose wavelength exceeds
 * `originalMaxPositions / lowFreqFactor` by `factor`, keeps those whose wavelength is under
 * `originalMaxPositions / highFreqFactor`, and blends the band between.
 */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  };

/** RoPE's settings in a model config. */
type RopeConfig = { headDim: number; ropeTheta: number; ropeScaling?: RopeScaling | null };

/** Frequency i, theta^(-2i/headDim), after llama3 scaling (linear scaling divides positions). */
function frequency(i: number, c: RopeConfig): number {
  const f = Math.pow(c.ropeTheta, -(2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (s?.type !== "llama3") return f;
  const wavelen = 2 * Math.PI / f;
  // transformers' _compute_llama3_parameters: both band edges belong to the blended band.
  if (wavelen > s.originalMaxPositions / s.lowFreqFactor) return f / s.factor;
  if (wavelen < s.originalMaxPositions / s.highFreqFactor) return f;
  const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) /
    (s.highFreqFactor - s.lowFreqFactor);
  return (1 - smooth) * f / s.factor + smooth * f;
}

/**
 * The RoPE table of `capacity` positions: cos/sin of the angle p * f_i for frequency i
 * (theta^(-2i/headDim), rescaled by `ropeScaling`; linear scaling divides p), computed in f64.
 * Takes the model's config (or any object with these fields).
 */
export function ropeTable(
  capacity: number,
  c: { headDim: number; ropeTheta: number; ropeScaling?: RopeScaling | null },
): Float32Array {
  const half = c.headDim / 2;
  const scaling = c.ropeScaling;
  const t = new Float32Array(capacity * half * 2);
  for (let i = 0; i < half; i++) {
    const f = frequency(i, c);
    for (let p = 0; p < capacity; p++) {
      const pos = scaling?.type === "linear" ? p / scaling.factor : p;
      const angle = pos * f;
      t[(p * half + i) * 2] = Math.cos(angle);
      t[(p * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  return t;
}

/**
 * RoPE on the query and key parts of `qkv` rows, both in place, at the rows' positions: the
 * training forward over whole sequences, where attention reads the keys from qkv itself.
 */
export function ropeInPlace(
  arena: Arena,
  o: AttentionShape & {
    positions: Tensor;
    /** [capacity, headDim/2] (cos, sin) pairs, see {@link ropeTable}. */
    rope: Tensor;
    qkv: Tensor;
    rows: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const threads = (o.nHeads + o.nKvHeads) * o.headDim / 2;
  return [makeDispatch(arena, {
    kernel: "rope_kv",
    code: wgsl.ropeKv,
    constants: { CACHE: false },
    params: [o.rows, o.nHeads, o.nKvHeads, o.headDim, o.capacity],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["positions", o.positions, "read", o.rows],
      ["rope", o.rope, "read", o.capacity * o.headDim],
      ["qkv", o.qkv, "write", o.rows * (o.nHeads + 2 * o.nKvHeads) * o.headDim],
      // The cache bindings are unused without CACHE; qkv stands in for them.
      ["kCache", o.qkv, "write", 0],
      ["vCache", o.qkv, "write", 0],
    ],
    workgroups: [Math.ceil(threads / 256), o.rows],
    label: o.label ?? "rope",
  })];
}
