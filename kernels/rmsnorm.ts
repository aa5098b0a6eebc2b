import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, for r < rows. */
export function rmsnorm(arena: Arena, o: {
  x: Tensor;
  weight: Tensor;
  out: Tensor;
  rows: number;
  dim: number;
  eps: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "rmsnorm",
    code: wgsl.rmsnorm,
    params: [o.rows, o.dim, f32bits(o.eps)],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["x", o.x, "read", o.rows * o.dim],
      ["weight", o.weight, "read", o.dim],
      ["out", o.out, "write", o.rows * o.dim],
    ],
    workgroups: [o.rows],
    label: o.label ?? "rmsnorm",
  })];
}
