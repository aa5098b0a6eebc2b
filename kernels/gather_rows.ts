import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * A row index that lives on the GPU: word `at` of `buffer` (for example the decode state's
 * HEAD_ROW, written by the verifier).
 */
export interface GpuIndex {
  /** The u32 buffer holding the index. */
  buffer: GPUBuffer;
  /** Word offset of the index in it. */
  at: number;
}

/**
 * out[outRow, :] = x[index + add, :] with the index read on the GPU; x holds `rows` rows of `dim`.
 */
export function gatherRows(arena: Arena, o: {
  x: Tensor;
  out: Tensor;
  index: GpuIndex;
  rows: number;
  dim: number;
  outRow: number;
  /** Added to the index read (default 0). */
  add?: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "gather_rows",
    code: wgsl.gatherRows,
    params: [o.dim, o.outRow, o.index.at, (o.add ?? 0) >>> 0],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["index", o.index.buffer, "read", o.index.at + 1],
      ["x", o.x, "read", o.rows * o.dim],
      ["out", o.out, "write", (o.outRow + 1) * o.dim],
    ],
    workgroups: [Math.ceil(o.dim / 256)],
    label: o.label ?? "gather_rows",
  })];
}
