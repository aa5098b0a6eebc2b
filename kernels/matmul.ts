import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch, type Matrix, partWords } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * y[m, n] = x[m] . W[n] for m < rows, n < N: the tiled product for prefill. A gated W gives
 * y = [x gate^T, x up^T] per row ([rows, 2N], gate columns first). One launch per part of W
 * (two for a gated part: its gate rows, then its up rows).
 */
export function matmul(arena: Arena, o: {
  x: Tensor;
  w: Matrix;
  y: Tensor;
  rows: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const w = o.w;
  const label = o.label ?? "matmul";
  const stride = w.outputs * (w.gated ? 2 : 1);
  const launches: { part: number; outOffset: number; wOffset: number; n: number }[] = [];
  w.parts.forEach((p, i) => {
    launches.push({ part: i, outOffset: p.start, wOffset: 0, n: p.outputs });
    if (w.gated) {
      launches.push({
        part: i,
        outOffset: w.outputs + p.start,
        wOffset: p.outputs * w.cols,
        n: p.outputs,
      });
    }
  });
  return launches.map((l, i) => {
    const p = w.parts[l.part];
    return makeDispatch(arena, {
      kernel: "matmul",
      code: wgsl.matmul,
      constants: { F16: w.dtype === "f16" },
      params: [o.rows, l.n, w.cols, l.outOffset, stride, l.wOffset],
      bindings: [
        doneFlag(arena.gpu, o.done),
        ["x", o.x, "read", o.rows * w.cols],
        ["w", p.buffer, "read", partWords(w, p)],
        ["y", o.y, "write", o.rows * stride],
      ],
      workgroups: [Math.ceil(l.n / 64), Math.ceil(o.rows / 64)],
      label: label + (launches.length > 1 ? `.${i}` : ""),
    });
  });
}
