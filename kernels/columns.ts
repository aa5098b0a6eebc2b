import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** out[r, c] = x[r, offset + c] for c < n, r < rows, x's rows `stride` floats apart. */
export function columns(arena: Arena, o: {
  x: Tensor;
  out: Tensor;
  rows: number;
  n: number;
  stride: number;
  offset: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const y = Math.min(o.rows, 65535);
  return [makeDispatch(arena, {
    kernel: "columns",
    code: wgsl.columns,
    params: [o.rows, o.n, o.stride, o.offset],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["x", o.x, "read", (o.rows - 1) * o.stride + o.offset + o.n],
      ["out", o.out, "write", o.rows * o.n],
    ],
    workgroups: [Math.ceil(o.n / 256), y, Math.ceil(o.rows / y)],
    label: o.label ?? "columns",
  })];
}
