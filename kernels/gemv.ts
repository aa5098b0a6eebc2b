import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import {
  type Bound,
  type Dispatch,
  doneFlag,
  f32bits,
  grid,
  isQuantized,
  makeDispatch,
  type Matrix,
  partWords,
  quantLayout,
  type WeightDType,
} from "./dispatch.ts";
import { type AttentionShape, kvCacheWords } from "./rope_kv.ts";
import * as wgsl from "./wgsl.ts";

/** Most rows one workgroup carries; more rows walk several row groups (each re-reads W). */
export const GEMV_MAX_ROWS = 8;

/**
 * Threads per output row for an N x K matrix, from a sweep on an H200 (bench/overhead.ts): about
 * 32 K-steps per thread, but at least 128 workgroups. It depends on the whole matrix's shape
 * only, never on the number of rows or on how the matrix is split into parts, so a row's
 * summation order (and bits) are the same for every block size.
 */
export function threadsPerRow(n: number, k: number, dtype: WeightDType): number {
  // steps per weight row: a 16-byte load (f32, f16), or 8 weights (q8, q4: gemv_q.wgsl)
  const perRow = k / { f32: 4, f16: 8, q8: 8, q4: 8 }[dtype];
  let tpr = 8;
  while (tpr < 32 && perRow / tpr > 32) tpr *= 2;
  while (tpr < 64 && (n * tpr) / 256 < 128) tpr *= 2;
  return tpr;
}

/**
 * y[r, n] = act(W[n] . x'[r] + bias[n]) + residual[r, n % residualDim] for r < rows, n < N,
 * where x' is x or, with `norm`, RMSNorm(x) * weight; for a gated W (gate and up stacked)
 * y[r, n] = silu(gate[n] . x'[r]) * (up[n] . x'[r]). The decode-time product: weights are read
 * once for up to 8 rows. `xRows` and `yRows` place the rows inside wider tensors (default:
 * packed rows of K and N). One launch per part of W.
 */
export function gemv(arena: Arena, o: {
  x: Tensor;
  w: Matrix;
  y: Tensor;
  rows: number;
  bias?: Tensor;
  silu?: boolean;
  residual?: Tensor;
  /** Length of a residual row; default N. A smaller value broadcasts it over N. */
  residualDim?: number;
  /** Row r of x starts at element `offset + r * stride` of x (both multiples of 4). */
  xRows?: { offset: number; stride: number };
  /** Row r of y starts at element `offset + r * stride` of y. */
  yRows?: { offset: number; stride: number };
  /** Fused RMSNorm of x first: x' = x / rms(x) * weight. */
  norm?: { weight: Tensor; eps: number };
  /**
   * W is the fused [Wq; Wk; Wv] and y the qkv rows: RoPE rotates q and k at each row's position,
   * q goes to y, k and v into the KV cache at that position (ropeKv()'s job, fused). Every part
   * of W must start and end on a head.
   */
  rope?: AttentionShape & {
    positions: Tensor;
    /** [capacity, headDim/2] (cos, sin) pairs. */
    table: Tensor;
    kCache: Tensor;
    vCache: Tensor;
    kvDtype: "f32" | "f16";
  };
  /** Tuning: threads per output row (a power of two <= 256); output rows per thread (1 or 2). */
  tune?: { threadsPerRow?: number; rowsPerThread?: 1 | 2 };
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const w = o.w;
  const n = w.outputs;
  const k = w.cols;
  const f16 = w.dtype === "f16";
  const quantized = isQuantized(w.dtype);
  const label = o.label ?? "gemv";
  const kMultiple = { f32: 4, f16: 8, q8: 32, q4: 32 }[w.dtype];
  if (k % kMultiple !== 0) {
    throw new ShapeError(`${label}: gemv needs K a multiple of ${kMultiple}, got ${k}`);
  }
  const xl = o.xRows ?? { offset: 0, stride: k };
  const yl = o.yRows ?? { offset: 0, stride: n };
  if (xl.offset % 4 !== 0 || xl.stride % 4 !== 0 || xl.stride < k || yl.stride < n) {
    throw new ShapeError(
      `${label}: x rows at ${xl.offset} + r * ${xl.stride} must be vec4-aligned and hold ${k} ` +
        `values; y rows (stride ${yl.stride}) must hold ${n}`,
    );
  }
  const tpr = o.tune?.threadsPerRow ?? threadsPerRow(n, k, w.dtype);
  const rowsPerGroup = Math.min(o.rows, GEMV_MAX_ROWS);
  const residualDim = o.residualDim ?? n;
  const rope = o.rope;
  if (rope) {
    const heads = rope.nHeads + 2 * rope.nKvHeads;
    const onHeads = w.parts.every((p) =>
      p.start % rope.headDim === 0 && p.outputs % rope.headDim === 0
    );
    if (w.gated || o.residual || o.silu || n !== heads * rope.headDim || !onHeads) {
      throw new ShapeError(
        `${label}: the RoPE epilogue needs an ungated [q; k; v] matrix of ${heads} heads of ` +
          `${rope.headDim} rows, split on heads, and no residual or silu; got ${n} rows`,
      );
    }
  }
  const unused = arena.gpu.notDone; // bound in place of an absent optional input; never read
  const cache = rope ? kvCacheWords(rope) : 1;
  const bindings = (p: typeof w.parts[number]) =>
    [
      doneFlag(arena.gpu, o.done),
      ["x", o.x, "read", xl.offset + (o.rows - 1) * xl.stride + k],
      ["w", p.buffer, "read", partWords(w, p)],
      ["bias", o.bias ?? unused, "read", o.bias ? n : 1],
      ["residual", o.residual ?? unused, "read", o.residual ? o.rows * residualDim : 1],
      ["y", o.y, "write", yl.offset + (o.rows - 1) * yl.stride + n],
      ["norm", o.norm?.weight ?? unused, "read", o.norm ? k : 1],
      ["positions", rope?.positions ?? unused, "read", rope ? o.rows : 1],
      ["rope", rope?.table ?? unused, "read", rope ? rope.capacity * rope.headDim : 1],
      ["kCache", rope?.kCache ?? arena.gpu.scratchWord, "write", cache],
      ["vCache", rope?.vCache ?? arena.gpu.scratchWord, "write", cache],
    ] as Bound[];
  const params = (p: typeof w.parts[number]) => [
    p.outputs,
    k,
    o.rows,
    residualDim,
    f32bits(o.norm?.eps ?? 0),
    p.start,
    yl.stride,
    xl.offset / 4,
    xl.stride / 4,
    yl.offset,
    rope?.nHeads ?? 0,
    rope?.nKvHeads ?? 0,
    rope?.headDim ?? 0,
    rope?.capacity ?? 0,
  ];
  if (quantized) {
    // gemv_q.wgsl: one output row per thread group; the part buffer is bound again for its scales.
    return w.parts.map((p, i) => {
      const l = quantLayout(w.dtype as "q8" | "q4", p.outputs * (w.gated ? 2 : 1), k);
      const [gx, gz] = grid(Math.ceil(p.outputs / (256 / tpr)));
      return makeDispatch(arena, {
        kernel: "gemv_q",
        code: wgsl.gemvQ + wgsl.gemvEpilogue,
        constants: {
          Q4: w.dtype === "q4",
          // 32 bytes in flight per thread, as the f16 kernel's two 16-byte loads
          UNROLL: w.dtype === "q4" ? 8 : 4,
          ROWS: rowsPerGroup,
          TPR: tpr,
          GATED: w.gated,
          BIAS: !!o.bias,
          SILU: !!o.silu,
          RESIDUAL: !!o.residual,
          NORM: !!o.norm,
          ROPE: !!rope,
          KV_F16: rope?.kvDtype === "f16",
        },
        params: [...params(p), l.scaleBase, l.scaleStride],
        bindings: [...bindings(p), ["scales", p.buffer, "read", l.words]],
        workgroups: [gx, Math.ceil(o.rows / rowsPerGroup), gz],
        label: label + (w.parts.length > 1 ? `.part${i}` : ""),
      });
    });
  }
  return w.parts.map((p, i) => {
    // Blocks of 2-4 rows: two output rows per thread, so each x load serves two weight rows,
    // unless the matrix is gated (one x load already serves gate and up) or the workgroups would
    // drop below 96 (bench/overhead.ts sweep on an H200). Output bits do not depend on this.
    const twoRows = rowsPerGroup > 1 && rowsPerGroup <= 4 && !w.gated &&
      (p.outputs * tpr) / 512 >= 96;
    const ro = o.tune?.rowsPerThread ?? (twoRows ? 2 : 1);
    if (ro * rowsPerGroup > GEMV_MAX_ROWS) {
      throw new ShapeError(`${label}: rowsPerThread * rows must be <= ${GEMV_MAX_ROWS}`);
    }
    const [gx, gz] = grid(Math.ceil(p.outputs / ((256 / tpr) * ro)));
    return makeDispatch(arena, {
      kernel: "gemv",
      code: wgsl.gemv + wgsl.gemvEpilogue,
      constants: {
        F16: f16,
        ROWS: rowsPerGroup,
        TPR: tpr,
        RO: ro,
        GATED: w.gated,
        BIAS: !!o.bias,
        SILU: !!o.silu,
        RESIDUAL: !!o.residual,
        NORM: !!o.norm,
        ROPE: !!rope,
        KV_F16: rope?.kvDtype === "f16",
      },
      params: params(p),
      bindings: bindings(p),
      workgroups: [gx, Math.ceil(o.rows / rowsPerGroup), gz],
      label: label + (w.parts.length > 1 ? `.part${i}` : ""),
    });
  });
}
