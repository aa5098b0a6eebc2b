import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, grid, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * out[outOffset + c] = scale * sum_r x[r, c] (added to what is there with `accumulate`), for
 * c < cols, summed in an order fixed by the shape, so a rerun gives the same bits. Finishes the
 * two-pass weight-gradient reductions, gives bias gradients (the sum of dy over rows) and, with
 * `cols` 1, sums a vector such as per-row losses into one float.
 */
export function sumRows(arena: Arena, o: {
  /** [rows, cols] */
  x: Tensor;
  /** [outOffset + cols] */
  out: Tensor;
  rows: number;
  cols: number;
  /** First element of `out` written (default 0). */
  outOffset?: number;
  /** Multiplies the sum (default 1). */
  scale?: number;
  /** Adds into `out` instead of overwriting it. */
  accumulate?: boolean;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const outOffset = o.outOffset ?? 0;
  // One column: all 256 lanes split its rows. Many columns: 64 adjacent columns per workgroup, so
  // each lane's loads are contiguous, and 4 lanes per column.
  const [wx, wy] = o.cols === 1 ? [1, 256] : [64, 4];
  return [makeDispatch(arena, {
    kernel: "sum_rows",
    code: wgsl.sumRows,
    constants: { WX: wx, WY: wy, ACCUMULATE: !!o.accumulate },
    params: [o.rows, o.cols, outOffset, f32bits(o.scale ?? 1)],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["x", o.x, "read", o.rows * o.cols],
      ["out", o.out, "write", outOffset + o.cols],
    ],
    workgroups: grid(Math.ceil(o.cols / wx)),
    label: o.label ?? "sum_rows",
  })];
}
