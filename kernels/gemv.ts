import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, f32bits, grid, makeDispatch, type Matrix } from "./dispatch.ts";
import code from "./gemv.wgsl" with { type: "text" };

/** Most rows one workgroup carries; more rows walk several row groups (each re-reads W). */
export const GEMV_MAX_ROWS = 8;

/**
 * Threads per output row for an N x K matrix, from a sweep on an H200 (bench/overhead.ts): about
 * 32 K-steps per thread, but at least 128 workgroups. It depends on the shape only, never on the
 * number of rows, so a row's summation order (and bits) are the same for every block size.
 */
export function threadsPerRow(n: number, k: number, f16: boolean): number {
  const perRow = f16 ? k / 8 : k / 4;
  let tpr = 8;
  while (tpr < 32 && perRow / tpr > 32) tpr *= 2;
  while (tpr < 64 && (n * tpr) / 256 < 128) tpr *= 2;
  return tpr;
}

/**
 * y[r, n] = act(W[n] . x'[r] + bias[n]) + residual[r, n % residualDim] for r < rows, n < N,
 * where x' is x or, with `norm`, RMSNorm(x) * weight;
 * or with `gated` (W = [gate; up], 2N rows) y[r, n] = silu(gate[n] . x[r]) * (up[n] . x[r]).
 * The decode-time product: weights are read once for up to 8 rows.
 */
export function gemv(gpu: Gpu, o: {
  state: GPUBuffer;
  x: GPUBuffer;
  w: Matrix;
  y: GPUBuffer;
  rows: number;
  gated?: boolean;
  bias?: GPUBuffer;
  silu?: boolean;
  residual?: GPUBuffer;
  /** Length of a residual row; default N. A smaller value broadcasts it over N. */
  residualDim?: number;
  /** Fused RMSNorm of x first: x' = x / rms(x) * weight. */
  norm?: { weight: GPUBuffer; eps: number };
  /** Tuning: threads per output row (a power of two <= 256); output rows per thread (1 or 2). */
  tune?: { threadsPerRow?: number; rowsPerThread?: 1 | 2 };
  label?: string;
}): Dispatch {
  const n = o.gated ? o.w.rows / 2 : o.w.rows;
  const tpr = o.tune?.threadsPerRow ?? threadsPerRow(n, o.w.cols, o.w.f16);
  const rowsPerGroup = Math.min(o.rows, GEMV_MAX_ROWS);
  // Blocks of 2-4 rows: two output rows per thread, so each x load serves two weight rows,
  // unless the matrix is gated (one x load already serves gate and up) or the workgroups would
  // drop below 96 (bench/overhead.ts sweep on an H200). Output bits do not depend on this.
  const twoRows = rowsPerGroup > 1 && rowsPerGroup <= 4 && !o.gated && (n * tpr) / 512 >= 96;
  const ro = o.tune?.rowsPerThread ?? (twoRows ? 2 : 1);
  if (ro * rowsPerGroup > GEMV_MAX_ROWS) throw new RangeError("gemv: rowsPerThread * rows > 8");
  const [gx, gz] = grid(Math.ceil(n / ((256 / tpr) * ro)));
  const unused = o.state; // bound in place of an absent optional input; never read
  return makeDispatch(gpu, {
    kernel: "gemv",
    code,
    constants: {
      F16: o.w.f16,
      ROWS: rowsPerGroup,
      TPR: tpr,
      RO: ro,
      GATED: !!o.gated,
      BIAS: !!o.bias,
      SILU: !!o.silu,
      RESIDUAL: !!o.residual,
      NORM: !!o.norm,
    },
    params: [n, o.w.cols, o.rows, o.residualDim ?? n, f32bits(o.norm?.eps ?? 0)],
    buffers: [
      [o.state, "read"],
      [o.x, "read"],
      [o.w.buffer, "read"],
      [o.bias ?? unused, "read"],
      [o.residual ?? unused, "read"],
      [o.y, "write"],
      [o.norm?.weight ?? unused, "read"],
    ],
    workgroups: [gx, Math.ceil(o.rows / rowsPerGroup), gz],
    label: o.label ?? "gemv",
  });
}
