import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, grid, makeDispatch } from "./dispatch.ts";
import { normWeightBackward } from "./norm_weight_backward.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Backward of `qkNorm()` (per-head RMSNorm of the query and key heads of fused qkv rows): the
 * query and key heads of `dqkv` (the gradient of the normalised, pre-RoPE values) become the
 * gradient of the values before the norm, in place, value heads untouched; and the weight
 * gradients dWeight[0] (query heads) and dWeight[1] (key heads) are reduced over rows and heads
 * in two deterministic passes each. The weight gradient reads the dy that the input gradient
 * overwrites, so it runs between a pass that only writes 1/rms of each head and the pass that
 * writes dx: six dispatches.
 */
export function qkNormBackward(arena: Arena, o: {
  /** [rows, (nHeads + 2 nKvHeads) headDim] the projection's output, before the norm. */
  x: Tensor;
  /** [rows, (nHeads + 2 nKvHeads) headDim] gradient, updated in place. */
  dqkv: Tensor;
  /** [2, headDim]: q_norm then k_norm weights. */
  weight: Tensor;
  /** [2, headDim] receives their gradients. */
  dWeight: Tensor;
  rows: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  eps: number;
  /** Adds into dWeight instead of overwriting it. */
  accumulate?: boolean;
  /** Scratch [rows, nHeads + nKvHeads] for 1/rms of each head; allocated when absent. */
  rstd?: Tensor;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const label = o.label ?? "qk_norm_backward";
  const heads = o.nHeads + o.nKvHeads;
  const stride = (o.nHeads + 2 * o.nKvHeads) * o.headDim;
  const rstd = o.rstd ?? arena.tensor(`${label} rstd`, [o.rows, heads]);
  const weightGrad = (h0: number, n: number, name: string) =>
    normWeightBackward(arena, {
      x: o.x,
      dy: o.dqkv,
      rstd,
      dWeight: o.dWeight,
      dWeightOffset: h0 === 0 ? 0 : o.headDim,
      nVec: o.rows * n,
      perRow: n,
      dim: o.headDim,
      xStride: stride,
      xOffset: h0 * o.headDim,
      sStride: heads,
      sOffset: h0,
      accumulate: o.accumulate,
      done: o.done,
      label: `${label}.${name}`,
    });
  const pass = (dx: boolean) =>
    makeDispatch(arena, {
      kernel: "qk_norm_backward",
      code: wgsl.qkNormBackward,
      constants: { DX: dx },
      params: [o.rows, o.nHeads, o.nKvHeads, o.headDim, f32bits(o.eps)],
      bindings: [
        doneFlag(arena.gpu, o.done),
        ["weight", o.weight, "read", 2 * o.headDim],
        ["x", o.x, "read", o.rows * stride],
        ["dqkv", o.dqkv, "write", o.rows * stride],
        ["rstd", rstd, "write", o.rows * heads],
      ],
      workgroups: [heads, ...grid(o.rows)],
      label: `${label}.${dx ? "dx" : "rstd"}`,
    });
  return [
    pass(false),
    ...weightGrad(0, o.nHeads, "dq_norm"),
    ...weightGrad(o.nHeads, o.nKvHeads, "dk_norm"),
    pass(true),
  ];
}
