import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import { type Dispatch, doneFlag, makeDispatch, type Matrix, partWords } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * y[m, n] = x[m] . W[n] (+ bias[n]) for m < rows, n < N: the tiled product for prefill. A gated
 * W (no bias) gives y = [x gate^T, x up^T] per row ([rows, 2N], gate columns first). `xRows`
 * and `yRows` place the rows inside wider tensors (default: packed rows of K and of N or 2N).
 * One launch per part of W (two for a gated part: its gate rows, then its up rows).
 */
export function matmul(arena: Arena, o: {
  x: Tensor;
  w: Matrix;
  y: Tensor;
  rows: number;
  bias?: Tensor;
  /** Row r of x starts at element `offset + r * stride` of x. */
  xRows?: { offset: number; stride: number };
  /** Row r of y starts at element `offset + r * stride` of y. */
  yRows?: { offset: number; stride: number };
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const w = o.w;
  const label = o.label ?? "matmul";
  const cols = w.outputs * (w.gated ? 2 : 1);
  const xl = o.xRows ?? { offset: 0, stride: w.cols };
  const yl = o.yRows ?? { offset: 0, stride: cols };
  if (o.bias && w.gated) throw new ShapeError(`${label}: a gated matrix takes no bias`);
  if (xl.stride < w.cols || yl.stride < cols) {
    throw new ShapeError(
      `${label}: row strides (x ${xl.stride}, y ${yl.stride}) must hold a row (${w.cols}, ${cols})`,
    );
  }
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
  const unused = arena.gpu.notDone; // bound in place of an absent bias; never read
  return launches.map((l, i) => {
    const p = w.parts[l.part];
    return makeDispatch(arena, {
      kernel: "matmul",
      code: wgsl.matmul,
      constants: { F16: w.dtype === "f16", BIAS: !!o.bias },
      params: [
        o.rows,
        l.n,
        w.cols,
        l.outOffset,
        yl.stride,
        l.wOffset,
        xl.offset,
        xl.stride,
        yl.offset,
      ],
      bindings: [
        doneFlag(arena.gpu, o.done),
        ["x", o.x, "read", xl.offset + (o.rows - 1) * xl.stride + w.cols],
        ["w", p.buffer, "read", partWords(w, p)],
        ["bias", o.bias ?? unused, "read", o.bias ? cols : 1],
        ["y", o.y, "write", yl.offset + (o.rows - 1) * yl.stride + cols],
      ],
      workgroups: [Math.ceil(l.n / 64), Math.ceil(o.rows / 64)],
      label: label + (launches.length > 1 ? `.${i}` : ""),
    });
  });
}
