import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, f32bits, makeDispatch } from "./dispatch.ts";
import code from "./rmsnorm.wgsl" with { type: "text" };

/** out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, for r < rows. */
export function rmsnorm(gpu: Gpu, o: {
  state: GPUBuffer;
  x: GPUBuffer;
  weight: GPUBuffer;
  out: GPUBuffer;
  rows: number;
  dim: number;
  eps: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "rmsnorm",
    code,
    params: [o.rows, o.dim, f32bits(o.eps)],
    buffers: [[o.state, "read"], [o.x, "read"], [o.weight, "read"], [o.out, "write"]],
    workgroups: [o.rows],
    label: o.label ?? "rmsnorm",
  });
}
