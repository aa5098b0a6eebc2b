import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, grid, makeDispatch } from "./dispatch.ts";
import addCode from "./add.wgsl" with { type: "text" };
import swigluCode from "./swiglu.wgsl" with { type: "text" };
import selectRowCode from "./select_row.wgsl" with { type: "text" };

/** out[i] = a[i] + b[i] for i < n. */
export function add(gpu: Gpu, o: {
  state: GPUBuffer;
  a: GPUBuffer;
  b: GPUBuffer;
  out: GPUBuffer;
  n: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "add",
    code: addCode,
    params: [o.n],
    buffers: [[o.state, "read"], [o.a, "read"], [o.b, "read"], [o.out, "write"]],
    workgroups: grid(Math.ceil(o.n / 256)),
    label: o.label ?? "add",
  });
}

/** out[r, i] = silu(gu[r, i]) * gu[r, n + i] for r < rows, i < n. */
export function swiglu(gpu: Gpu, o: {
  state: GPUBuffer;
  gu: GPUBuffer;
  out: GPUBuffer;
  rows: number;
  n: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "swiglu",
    code: swigluCode,
    params: [o.rows, o.n],
    buffers: [[o.state, "read"], [o.gu, "read"], [o.out, "write"]],
    workgroups: [Math.ceil(o.n / 256), o.rows],
    label: o.label ?? "swiglu",
  });
}

/** out[outRow, :] = x[state.headRow, :]: the row the verifier chose for the draft heads. */
export function selectRow(gpu: Gpu, o: {
  state: GPUBuffer;
  x: GPUBuffer;
  out: GPUBuffer;
  dim: number;
  outRow: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "select_row",
    code: selectRowCode,
    params: [o.dim, o.outRow],
    buffers: [[o.state, "read"], [o.x, "read"], [o.out, "write"]],
    workgroups: [Math.ceil(o.dim / 256)],
    label: o.label ?? "select_row",
  });
}
