import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * RMSNorm of every query and key head of `qkv` rows, in place, each over its headDim values
 * (Qwen3's q_norm and k_norm, applied before RoPE): v = v / sqrt(mean(v^2) + eps) * g, where g
 * is `weight` row 0 for query heads and row 1 for key heads. Values are untouched.
 */
export function qkNorm(arena: Arena, o: {
  /** [rows, (nHeads + 2 nKvHeads) headDim], updated in place. */
  qkv: Tensor;
  /** [2, headDim]: q_norm then k_norm weights. */
  weight: Tensor;
  rows: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  eps: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "qk_norm",
    code: wgsl.qkNorm,
    params: [o.rows, o.nHeads, o.nKvHeads, o.headDim, f32bits(o.eps)],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["weight", o.weight, "read", 2 * o.headDim],
      ["qkv", o.qkv, "write", o.rows * (o.nHeads + 2 * o.nKvHeads) * o.headDim],
    ],
    workgroups: [o.nHeads + o.nKvHeads, o.rows],
    label: o.label ?? "qk_norm",
  })];
}
