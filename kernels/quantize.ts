import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import {
  type Dispatch,
  doneFlag,
  grid,
  makeDispatch,
  type Matrix,
  type MatrixPart,
  QUANT_BLOCK,
  quantLayout,
} from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** Throws unless a matrix of `cols` columns can be quantized (whole blocks of 32 per row). */
export function checkQuantizable(label: string, cols: number): void {
  if (cols % QUANT_BLOCK !== 0) {
    throw new ShapeError(
      `${label}: q8 and q4 quantize rows in blocks of ${QUANT_BLOCK}, and this matrix has ${cols} ` +
        `columns: use dtype "f16" for this model`,
    );
  }
}

/** Threads in x per row of the grid, and the grid, for `n` threads of 64 per workgroup. */
function threads(n: number): { perX: number; workgroups: [number, number, number] } {
  const [gx, gy] = grid(Math.ceil(n / 64));
  return { perX: gx * 64, workgroups: [gx, gy, 1] };
}

/**
 * Quantizes `rows` f32 rows of `src` ([rows, cols]) into rows dstRow.. of a q8 or q4 part buffer
 * (`partRows` rows in all, both halves of a gated part), in quantize.wgsl's layout.
 */
export function quantize(arena: Arena, o: {
  src: Tensor | GPUBuffer;
  dst: GPUBuffer;
  dtype: "q8" | "q4";
  rows: number;
  cols: number;
  dstRow: number;
  partRows: number;
  label?: string;
}): Dispatch[] {
  const label = o.label ?? "quantize";
  checkQuantizable(label, o.cols);
  const l = quantLayout(o.dtype, o.partRows, o.cols);
  const pairs = Math.ceil(o.cols / QUANT_BLOCK / 2);
  const t = threads(o.rows * pairs);
  return [makeDispatch(arena, {
    kernel: "quantize",
    code: wgsl.quantize,
    constants: { Q4: o.dtype === "q4" },
    params: [o.rows, o.cols, o.dstRow, l.scaleBase, l.scaleStride, t.perX],
    bindings: [
      ["src", o.src, "read", o.rows * o.cols],
      ["dst", o.dst, "write", l.words],
    ],
    workgroups: t.workgroups,
    label,
  })];
}

/**
 * Dequantizes one part of a q8 or q4 matrix to f16 pairs in `out` (the f16 layout of that part):
 * what the tiled matrix product reads for blocks of more rows than the gemv takes.
 */
export function dequantize(arena: Arena, o: {
  w: Matrix;
  part: MatrixPart;
  out: Tensor | GPUBuffer;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const w = o.w;
  if (w.dtype !== "q8" && w.dtype !== "q4") {
    throw new ShapeError(`${o.label ?? "dequantize"}: a ${w.dtype} matrix is not quantized`);
  }
  const rows = o.part.outputs * (w.gated ? 2 : 1);
  const l = quantLayout(w.dtype, rows, w.cols);
  const t = threads(rows * (w.cols / 8));
  return [makeDispatch(arena, {
    kernel: "dequantize",
    code: wgsl.dequantize,
    constants: { Q4: w.dtype === "q4" },
    params: [rows, w.cols, l.scaleBase, l.scaleStride, t.perX],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["w", o.part.buffer, "read", l.words],
      ["out", o.out, "write", rows * w.cols / 2],
    ],
    workgroups: t.workgroups,
    label: o.label ?? "dequantize",
  })];
}
