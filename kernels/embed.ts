import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, makeDispatch, type Matrix } from "./dispatch.ts";
import code from "./embed.wgsl" with { type: "text" };

/** out[r, :] = table[ids[idsOffset + r], :] for r < rows; ids outside the vocabulary give zeros. */
export function embed(gpu: Gpu, o: {
  state: GPUBuffer;
  ids: GPUBuffer;
  table: Matrix;
  out: GPUBuffer;
  rows: number;
  idsOffset?: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "embed",
    code,
    constants: { F16: o.table.f16 },
    params: [o.rows, o.table.cols, o.table.rows, o.idsOffset ?? 0],
    buffers: [[o.state, "read"], [o.ids, "read"], [o.table.buffer, "read"], [o.out, "write"]],
    workgroups: [Math.ceil(o.table.cols / 256), o.rows],
    label: o.label ?? "embed",
  });
}
