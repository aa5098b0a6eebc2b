import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** out[pos[r], :] = x[r, :] for r < rows, with the positions read on the GPU. */
export function scatterRows(arena: Arena, o: {
  rows: number;
  dim: number;
  pos: Tensor;
  x: Tensor;
  out: Tensor;
  done?: GPUBuffer;
  label: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "scatter_rows",
    code: wgsl.scatterRows,
    params: [o.rows, o.dim],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["pos", o.pos, "read", o.rows],
      ["x", o.x, "read", o.rows * o.dim],
      ["out", o.out, "write", o.dim],
    ],
    workgroups: [Math.ceil(o.dim / 256), o.rows],
    label: o.label,
  })];
}
