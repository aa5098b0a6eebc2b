import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, grid, makeDispatch } from "./dispatch.ts";
import { normWeightBackward } from "./norm_weight_backward.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Backward of `rmsnorm()` (y = x s g, s = 1/sqrt(mean(x^2) + eps) per row): the input
 * gradient dx = s g dy - x s^3/dim sum(g dy x), one workgroup per row, then the weight gradient
 * dWeight = sum over rows of dy x s in two deterministic passes (see {@link normWeightBackward}).
 * Three dispatches. `accumulateDx` adds dx into `dx` (where the residual stream's gradient
 * already is); `accumulateDWeight` adds into `dWeight`.
 */
export function rmsnormBackward(arena: Arena, o: {
  /** [rows, dim] the forward's input. */
  x: Tensor;
  /** [dim] the norm weight g. */
  weight: Tensor;
  /** [rows, dim] the gradient of the forward's output. */
  dy: Tensor;
  /** [rows, dim] receives the input gradient; a different buffer from dy. */
  dx: Tensor;
  /** [dim] receives the weight gradient. */
  dWeight: Tensor;
  rows: number;
  dim: number;
  eps: number;
  accumulateDx?: boolean;
  accumulateDWeight?: boolean;
  /** Scratch [rows] for 1/rms of each row; allocated in `arena` when absent. */
  rstd?: Tensor;
  /** Scratch for the partial sums (see normWeightBackward); allocated when absent. */
  partial?: Tensor;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const label = o.label ?? "rmsnorm_backward";
  const rstd = o.rstd ?? arena.tensor(`${label} rstd`, [o.rows]);
  return [
    makeDispatch(arena, {
      kernel: "rmsnorm_backward",
      code: wgsl.rmsnormBackward,
      constants: { ACCUMULATE: !!o.accumulateDx },
      params: [o.rows, o.dim, f32bits(o.eps)],
      bindings: [
        doneFlag(arena.gpu, o.done),
        ["x", o.x, "read", o.rows * o.dim],
        ["weight", o.weight, "read", o.dim],
        ["dy", o.dy, "read", o.rows * o.dim],
        ["dx", o.dx, "write", o.rows * o.dim],
        ["rstd", rstd, "write", o.rows],
      ],
      workgroups: grid(o.rows),
      label: `${label}.dx`,
    }),
    ...normWeightBackward(arena, {
      x: o.x,
      dy: o.dy,
      rstd,
      dWeight: o.dWeight,
      nVec: o.rows,
      perRow: 1,
      dim: o.dim,
      xStride: o.dim,
      xOffset: 0,
      sStride: 1,
      sOffset: 0,
      accumulate: o.accumulateDWeight,
      partial: o.partial,
      done: o.done,
      label: `${label}.dweight`,
    }),
  ];
}
