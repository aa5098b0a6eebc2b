import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, makeDispatch, type Matrix } from "./dispatch.ts";
import code from "./matmul.wgsl" with { type: "text" };

/** y[m, n] = x[m] . W[n] for m < rows, n < W.rows: the tiled product for prefill. */
export function matmul(gpu: Gpu, o: {
  state: GPUBuffer;
  x: GPUBuffer;
  w: Matrix;
  y: GPUBuffer;
  rows: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "matmul",
    code,
    constants: { F16: o.w.f16 },
    params: [o.rows, o.w.rows, o.w.cols],
    buffers: [[o.state, "read"], [o.x, "read"], [o.w.buffer, "read"], [o.y, "write"]],
    workgroups: [Math.ceil(o.w.rows / 64), Math.ceil(o.rows / 64)],
    label: o.label ?? "matmul",
  });
}
