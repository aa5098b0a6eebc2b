import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, grid, makeDispatch, type Matrix } from "./dispatch.ts";
import code from "./gemv.wgsl" with { type: "text" };

/** Most rows one workgroup carries; more rows walk several row groups (each re-reads W). */
export const GEMV_MAX_ROWS = 8;
const THREADS_PER_ROW = 32;

/**
 * y[r, n] = act(W[n] . x[r] + bias[n]) + residual[r, n % residualDim] for r < rows, n < N,
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
  /** Tuning: threads per output row (a power of two <= 256), output rows per thread, unroll. */
  tune?: { threadsPerRow?: number; rowsPerThread?: number; unroll?: number };
  label?: string;
}): Dispatch {
  const tpr = o.tune?.threadsPerRow ?? THREADS_PER_ROW;
  const n = o.gated ? o.w.rows / 2 : o.w.rows;
  const rowsPerGroup = Math.min(o.rows, GEMV_MAX_ROWS);
  const ro = o.tune?.rowsPerThread ?? Math.max(1, Math.floor(GEMV_MAX_ROWS / rowsPerGroup / 2));
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
      U: o.tune?.unroll ?? 4,
      GATED: !!o.gated,
      BIAS: !!o.bias,
      SILU: !!o.silu,
      RESIDUAL: !!o.residual,
    },
    params: [n, o.w.cols, o.rows, o.residualDim ?? n],
    buffers: [
      [o.state, "read"],
      [o.x, "read"],
      [o.w.buffer, "read"],
      [o.bias ?? unused, "read"],
      [o.residual ?? unused, "read"],
      [o.y, "write"],
    ],
    workgroups: [gx, Math.ceil(o.rows / rowsPerGroup), gz],
    label: o.label ?? "gemv",
  });
}
