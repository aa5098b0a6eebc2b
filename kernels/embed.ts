import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch, type Matrix, partWords } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * out[r, :] = table[ids[idsOffset + r], :] for r < rows; ids outside the vocabulary give zero
 * rows. One launch per part of a split table.
 */
export function embed(arena: Arena, o: {
  ids: Tensor;
  table: Matrix;
  out: Tensor;
  rows: number;
  idsOffset?: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const t = o.table;
  const idsOffset = o.idsOffset ?? 0;
  return t.parts.map((p, i) =>
    makeDispatch(arena, {
      kernel: "embed",
      code: wgsl.embed,
      constants: { F16: t.dtype === "f16" },
      params: [o.rows, t.cols, t.outputs, idsOffset, p.start, p.outputs],
      bindings: [
        doneFlag(arena.gpu, o.done),
        ["ids", o.ids, "read", idsOffset + o.rows],
        ["table", p.buffer, "read", partWords(t, p)],
        ["out", o.out, "write", o.rows * t.cols],
      ],
      workgroups: [Math.ceil(t.cols / 256), o.rows],
      label: (o.label ?? "embed") + (t.parts.length > 1 ? `.part${i}` : ""),
    })
  );
}
