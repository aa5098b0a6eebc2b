import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, grid, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Backward of `swiglu()` (out = silu(gate) up): dgu[r, i] = dout u silu'(g) for the gate half
 * and dout silu(g) for the up half, with g, u = gu[r, i], gu[r, n + i].
 */
export function swigluBackward(arena: Arena, o: {
  /** [rows, 2n] the forward's input, gate then up. */
  gu: Tensor;
  /** [rows, n] the gradient of the forward's output. */
  dout: Tensor;
  /** [rows, 2n] receives the gradient of gu. */
  dgu: Tensor;
  rows: number;
  n: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "swiglu_backward",
    code: wgsl.swigluBackward,
    params: [o.rows, o.n],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["gu", o.gu, "read", o.rows * 2 * o.n],
      ["dout", o.dout, "read", o.rows * o.n],
      ["dgu", o.dgu, "write", o.rows * 2 * o.n],
    ],
    workgroups: [Math.ceil(o.n / 256), ...grid(o.rows)],
    label: o.label ?? "swiglu_backward",
  })];
}
