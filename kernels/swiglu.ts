import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** out[r, i] = silu(gu[r, i]) * gu[r, n + i] for r < rows, i < n. */
export function swiglu(arena: Arena, o: {
  gu: Tensor;
  out: Tensor;
  rows: number;
  n: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "swiglu",
    code: wgsl.swiglu,
    params: [o.rows, o.n],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["gu", o.gu, "read", o.rows * 2 * o.n],
      ["out", o.out, "write", o.rows * o.n],
    ],
    workgroups: [Math.ceil(o.n / 256), o.rows],
    label: o.label ?? "swiglu",
  })];
}
