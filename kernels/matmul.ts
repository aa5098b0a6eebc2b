/**
 * The tiled matrix products of a Linear layer, for prefill, full forwards and training:
 * {@link matmul} (y = x W^T), {@link matmulDx} (dX = dY W) and {@link matmulDw} (dW = dY^T X),
 * all on matmul.wgsl (register-blocked, workgroup-tiled, f32 accumulation), with an optional
 * split over K whose partial sums matmul_reduce.wgsl adds.
 * @module
 */
import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import {
  type Bound,
  type Dispatch,
  doneFlag,
  grid,
  makeDispatch,
  type Matrix,
  partWords,
} from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * A configuration of matmul.wgsl: a workgroup of `wx` x `wy` threads computes a block of
 * (`tm` wy) x (`tn` wx) outputs, `tm` x `tn` per thread, over K steps of `bk`; `split` > 1 cuts
 * K into that many ranges summed by separate workgroups and then added in order (this changes
 * the bits; the tile shape does not).
 */
export interface MatmulTune {
  /** Outputs per thread along M (rows of the result): 4 or 8. */
  tm: 4 | 8;
  /** Outputs per thread along N (columns of the result): 4 or 8. */
  tn: 4 | 8;
  /** Threads along N. */
  wx: number;
  /** Threads along M. */
  wy: number;
  /** K step staged in workgroup memory: a multiple of 4. */
  bk: number;
  /** Issue the next K step's loads before this step's FMAs (default true). */
  prefetch?: boolean;
  /** K ranges (default: {@link splitCount}). */
  split?: number;
}

/** Which product: y = x W^T, dX = dY W or dW = dY^T X. */
export type MatmulOp = "forward" | "dx" | "dw";

/**
 * The class of a product's shape that picks its tile: the operation and the rows of its result
 * (`small` up to 64: a prefill chunk; `medium` up to 512; `large` beyond).
 */
export function shapeClass(op: MatmulOp, m: number): string {
  return `${op}.${m <= 64 ? "small" : m <= 512 ? "medium" : "large"}`;
}

/**
 * The tile per shape class: the picks of `bench/matmul.ts` on an NVIDIA H200 (2026-11-22,
 * bench/results/matmul-h200.json), the tiles its prefill figures were measured with. That run
 * timed each kernel right after host syncs had left the GPU idle, and the same kernel's speed
 * varied up to 5x with the clocks (the bench now loads the GPU before each timing), so it ranks
 * tiles only roughly. It measured no shapes of the classes dx.small and dw.small. The bench
 * installs its own picks here (and in {@link MATMUL_SPLIT}) for the rest of its run.
 */
export const MATMUL_TILES: Record<string, Omit<MatmulTune, "split">> = {
  "forward.small": { tm: 8, tn: 8, wx: 16, wy: 8, bk: 16 },
  "forward.medium": { tm: 8, tn: 8, wx: 16, wy: 16, bk: 16, prefetch: false },
  "forward.large": { tm: 8, tn: 8, wx: 16, wy: 16, bk: 8 },
  "dx.small": { tm: 8, tn: 8, wx: 8, wy: 8, bk: 16 },
  "dx.medium": { tm: 8, tn: 8, wx: 16, wy: 16, bk: 16 },
  "dx.large": { tm: 8, tn: 8, wx: 16, wy: 8, bk: 16 },
  "dw.small": { tm: 8, tn: 8, wx: 8, wy: 8, bk: 16 },
  "dw.medium": { tm: 8, tn: 8, wx: 8, wy: 16, bk: 16 },
  "dw.large": { tm: 8, tn: 8, wx: 16, wy: 16, bk: 16, prefetch: false },
};

/** The configuration every device can run (8 KiB of workgroup memory, 64 threads). */
const FALLBACK: MatmulTune = { tm: 8, tn: 8, wx: 8, wy: 8, bk: 16 };

/**
 * When K is split: a product whose tiles give fewer than `target` workgroups cuts K into the
 * fewest ranges (a power of two, at most `max`, each at least `minK` long) that reach it. WebGPU
 * does not tell how many cores a GPU has, so `target` is one figure for all: 264 (2 per SM of an
 * H200) served the H200 sweep best of 132, 264 and 528.
 */
export const MATMUL_SPLIT = { target: 264, minK: 256, max: 16 };

/** The K ranges for a result of `m` x `n` over `k` with tile `t` (see {@link MATMUL_SPLIT}). */
export function splitCount(
  m: number,
  n: number,
  k: number,
  t: MatmulTune,
  target: number = MATMUL_SPLIT.target,
): number {
  const tiles = Math.ceil(m / (t.tm * t.wy)) * Math.ceil(n / (t.tn * t.wx));
  let split = 1;
  while (
    tiles * split < target && split * 2 <= MATMUL_SPLIT.max && k / (split * 2) >= MATMUL_SPLIT.minK
  ) {
    split *= 2;
  }
  return split;
}

/** Bytes of workgroup memory a tile needs. */
export function tileBytes(t: MatmulTune): number {
  return 4 * t.bk * (t.tm * t.wy + t.tn * t.wx);
}

/** Throws a {@link ShapeError} unless matmul.wgsl can run `t`. */
export function checkTune(t: MatmulTune, label: string): void {
  const nt = t.wx * t.wy;
  const ok = (t.tm === 4 || t.tm === 8) && (t.tn === 4 || t.tn === 8) && t.bk % 4 === 0 &&
    t.bk > 0 && nt > 0 && t.bk * t.tm * t.wy <= 16 * nt && t.bk * t.tn * t.wx <= 16 * nt &&
    (t.split ?? 1) >= 1;
  if (!ok) {
    throw new ShapeError(
      `${label}: tile ${JSON.stringify(t)} is not one matmul.wgsl runs: tm and tn are 4 or 8, ` +
        "bk a multiple of 4, and each operand's tile at most 16 elements per thread",
    );
  }
}

/** The measured tile for `op` on a result with `m` rows, or a smaller one this device can run. */
function pick(arena: Arena, op: MatmulOp, m: number): MatmulTune {
  const t = MATMUL_TILES[shapeClass(op, m)];
  const l = arena.gpu.device.limits;
  const fits = tileBytes(t) <= l.maxComputeWorkgroupStorageSize &&
    t.wx * t.wy <= l.maxComputeInvocationsPerWorkgroup;
  return fits ? t : FALLBACK;
}

/** Partial sums of split launches, one buffer per arena, grown when a launch needs more. */
const scratch = new WeakMap<Arena, GPUBuffer>();

function splitScratch(arena: Arena, words: number): GPUBuffer {
  let s = scratch.get(arena);
  if (!s || s.size < words * 4) {
    s = arena.buffer("matmul split partials", words * 4, GPUBufferUsage.STORAGE);
    scratch.set(arena, s);
  }
  return s;
}

/** Where a matrix operand lives: element (row, col) at `offset + row * stride + col`. */
interface Operand {
  name: string;
  buffer: Tensor | GPUBuffer;
  offset: number;
  stride: number;
  /** 4-byte words the launch may touch (checked against the buffer). */
  words: number;
}

/**
 * One product C = A B on matmul.wgsl (plus a reduce launch when split): C is m x n, the sum
 * runs over k. A is [m][k] (or [k][m] with `ta`), B is [n][k] (or [k][n] with `tb`).
 */
function product(arena: Arena, o: {
  m: number;
  n: number;
  k: number;
  a: Operand & { t: boolean };
  b: Operand & { t: boolean; f16: boolean };
  c: Operand;
  colOff?: number;
  gated?: { half: number; upOff: number };
  bias?: Tensor;
  biasWords?: number;
  acc: boolean;
  tune: MatmulTune;
  done?: GPUBuffer;
  label: string;
}): Dispatch[] {
  const t = o.tune;
  checkTune(t, o.label);
  const bm = t.tm * t.wy, bn = t.tn * t.wx;
  const n4 = Math.ceil(o.n / 4);
  // the partial sums must fit one binding
  const maxSplit = Math.floor(
    arena.gpu.device.limits.maxStorageBufferBindingSize / (o.m * n4 * 16),
  );
  const split = Math.max(1, Math.min(t.split ?? 1, Math.ceil(o.k / t.bk), maxSplit));
  const kChunk = Math.ceil(o.k / split / t.bk) * t.bk;
  const splits = Math.max(1, Math.ceil(o.k / kChunk));
  const tilesM = Math.ceil(o.m / bm);
  if (tilesM > 65535) {
    throw new ShapeError(`${o.label}: ${o.m} rows need ${tilesM} workgroups along M (max 65535)`);
  }
  const unused = arena.gpu.notDone; // bound in place of an absent bias; never read
  const aligned = (p: Operand) => p.offset % 4 === 0 && p.stride % 4 === 0;
  const colOff = o.colOff ?? 0;
  const epilogue = {
    BIAS: !!o.bias,
    ACC: o.acc,
    GATED: !!o.gated,
  };
  const half = o.gated?.half ?? 0, upOff = o.gated?.upOff ?? 0;
  const biasBound: Bound = ["bias", o.bias ?? unused, "read", o.bias ? o.biasWords ?? 1 : 1];
  const cBound: Bound = [o.c.name, o.c.buffer, "write", o.c.words];
  const partials = splits > 1 ? splitScratch(arena, splits * o.m * n4 * 4) : null;
  const main = makeDispatch(arena, {
    kernel: "matmul",
    code: wgsl.matmul,
    constants: {
      TA: o.a.t,
      TB: o.b.t,
      F16: o.b.f16,
      VA: aligned(o.a),
      VB: aligned(o.b),
      SPLIT: splits > 1,
      ...(splits > 1 ? { BIAS: false, ACC: false, GATED: false } : epilogue),
      TM: t.tm,
      TN: t.tn,
      WX: t.wx,
      WY: t.wy,
      BK: t.bk,
      PREFETCH: t.prefetch ?? true,
    },
    params: [
      o.m,
      o.n,
      o.k,
      o.a.offset,
      o.a.stride,
      o.b.offset,
      o.b.stride,
      partials ? 0 : o.c.offset,
      partials ? 4 * n4 : o.c.stride,
      colOff,
      half,
      upOff,
      kChunk,
    ],
    bindings: [
      doneFlag(arena.gpu, o.done),
      [o.a.name, o.a.buffer, "read", o.a.words],
      [o.b.name, o.b.buffer, "read", o.b.words],
      biasBound,
      partials ? ["partials", partials, "write", splits * o.m * n4 * 4] : cBound,
    ],
    workgroups: [Math.ceil(o.n / bn), tilesM, splits],
    label: o.label,
  });
  if (!partials) return [main];
  const [gx, gy] = grid(Math.ceil((o.m * n4) / 256));
  const reduce = makeDispatch(arena, {
    kernel: "matmul_reduce",
    code: wgsl.matmulReduce,
    constants: epilogue,
    params: [o.m, o.n, splits, n4, o.c.offset, o.c.stride, colOff, half, upOff],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["partials", partials, "read", splits * o.m * n4 * 4],
      biasBound,
      cBound,
    ],
    workgroups: [gx, gy],
    label: `${o.label}.reduce`,
  });
  return [main, reduce];
}

/** Rows of a tensor: row r starts at element `offset + r * stride`. */
export interface Rows {
  /** First element of row 0. */
  offset: number;
  /** Elements from one row to the next. */
  stride: number;
}

/** The tile and split for a result of m x n over k (split from the whole shape, so parts agree). */
function tuneFor(
  arena: Arena,
  op: MatmulOp,
  s: { m: number; n: number; k: number },
  tune: MatmulTune | undefined,
): MatmulTune {
  const t = tune ?? pick(arena, op, s.m);
  return { ...t, split: t.split ?? splitCount(s.m, s.n, s.k, t) };
}

function checkRows(label: string, what: string, r: Rows, need: number) {
  if (r.offset < 0 || r.stride < need) {
    throw new ShapeError(`${label}: ${what} rows (stride ${r.stride}) must hold ${need} values`);
  }
}

/**
 * y[m, n] = x[m] . W[n] (+ bias[n]) for m < rows, n < N: the tiled product for prefill and full
 * forwards. A gated W (no bias) gives y = [x gate^T, x up^T] per row ([rows, 2N], gate columns
 * first). `xRows` and `yRows` place the rows inside wider tensors (default: packed rows of K and
 * of N or 2N). One launch per part of W (gate and up rows of a part together), plus one that adds
 * the partial sums when K is split; the split depends on the whole matrix's shape only, so a
 * matrix split into parts gives the bits of the whole. `tune` overrides the measured tile.
 *
 * @example
 * ```ts
 * import { createGpu, matmul, run } from "@ahead/mtp/internals";
 * const gpu = await createGpu();
 * const a = gpu.arena("example");
 * const w = a.storage("w", new Float32Array(3 * 4).fill(1));
 * const x = a.tensor("x", [2, 4], "f32", new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]));
 * const y = a.tensor("y", [2, 3]);
 * const m = { outputs: 3, cols: 4, dtype: "f32" as const, gated: false, parts: [{ buffer: w, start: 0, outputs: 3 }] };
 * run(gpu, matmul(a, { x, w: m, y, rows: 2 }), "example"); // y = [[10, 10, 10], [26, 26, 26]]
 * gpu.dispose();
 * ```
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
  /** Tile and split instead of the measured ones (benchmarks): a {@link MatmulTune}. */
  tune?: {
    tm: 4 | 8;
    tn: 4 | 8;
    wx: number;
    wy: number;
    bk: number;
    prefetch?: boolean;
    split?: number;
  };
}): Dispatch[] {
  const w = o.w;
  const label = o.label ?? "matmul";
  const cols = w.outputs * (w.gated ? 2 : 1);
  const xl = o.xRows ?? { offset: 0, stride: w.cols };
  const yl = o.yRows ?? { offset: 0, stride: cols };
  if (o.bias && w.gated) throw new ShapeError(`${label}: a gated matrix takes no bias`);
  checkRows(label, "x", xl, w.cols);
  checkRows(label, "y", yl, cols);
  const tune = tuneFor(arena, "forward", { m: o.rows, n: cols, k: w.cols }, o.tune);
  const f16 = w.dtype === "f16";
  return w.parts.flatMap((p, i) =>
    product(arena, {
      m: o.rows,
      n: p.outputs * (w.gated ? 2 : 1),
      k: w.cols,
      a: {
        name: "x",
        buffer: o.x,
        offset: xl.offset,
        stride: xl.stride,
        words: xl.offset + (o.rows - 1) * xl.stride + w.cols,
        t: false,
      },
      b: {
        name: "w",
        buffer: p.buffer,
        offset: 0,
        stride: w.cols,
        words: partWords(w, p),
        t: false,
        f16,
      },
      c: {
        name: "y",
        buffer: o.y,
        offset: yl.offset,
        stride: yl.stride,
        words: yl.offset + (o.rows - 1) * yl.stride + cols,
      },
      colOff: p.start,
      gated: w.gated ? { half: p.outputs, upOff: w.outputs + p.start } : undefined,
      bias: o.bias,
      biasWords: cols,
      acc: false,
      tune,
      done: o.done,
      label: label + (w.parts.length > 1 ? `.part${i}` : ""),
    })
  );
}

/**
 * dX[m, k] = sum over n of dY[m, n] W[n, k] for m < rows (the gradient of y = x W^T with respect
 * to x), or with `accumulate` dX += that. A gated W takes dY = [dGate, dUp] ([rows, 2N]) and gives
 * dGate Wgate + dUp Wup. `dyRows` and `dxRows` place the rows inside wider tensors (default:
 * packed rows of N or 2N and of K). One launch per part of W (per half of a gated part); each
 * after the first adds to dX.
 *
 * @example
 * ```ts
 * import { matmulDx } from "./matmul.ts";
 * // dx = dy W, then the next layer's gradient adds to it:
 * // [...matmulDx(arena, { dy, w, dx, rows }), ...matmulDx(arena, { dy: dy2, w: w2, dx, rows, accumulate: true })]
 * ```
 */
export function matmulDx(arena: Arena, o: {
  dy: Tensor;
  w: Matrix;
  dx: Tensor;
  rows: number;
  accumulate?: boolean;
  /** Row r of dY starts at element `offset + r * stride` of dY. */
  dyRows?: Rows;
  /** Row r of dX starts at element `offset + r * stride` of dX. */
  dxRows?: Rows;
  done?: GPUBuffer;
  label?: string;
  /** Tile and split instead of the measured ones (benchmarks). */
  tune?: MatmulTune;
}): Dispatch[] {
  const w = o.w;
  const label = o.label ?? "matmul_dx";
  const cols = w.outputs * (w.gated ? 2 : 1);
  const dyl = o.dyRows ?? { offset: 0, stride: cols };
  const dxl = o.dxRows ?? { offset: 0, stride: w.cols };
  checkRows(label, "dy", dyl, cols);
  checkRows(label, "dx", dxl, w.cols);
  const f16 = w.dtype === "f16";
  const launches = w.parts.flatMap((p) =>
    w.gated
      ? [
        { p, dyCol: p.start, wOff: 0 },
        { p, dyCol: w.outputs + p.start, wOff: p.outputs * w.cols },
      ]
      : [{ p, dyCol: p.start, wOff: 0 }]
  );
  return launches.flatMap((l, i) =>
    product(arena, {
      m: o.rows,
      n: w.cols,
      k: l.p.outputs,
      a: {
        name: "dy",
        buffer: o.dy,
        offset: dyl.offset + l.dyCol,
        stride: dyl.stride,
        words: dyl.offset + (o.rows - 1) * dyl.stride + cols,
        t: false,
      },
      b: {
        name: "w",
        buffer: l.p.buffer,
        offset: l.wOff,
        stride: w.cols,
        words: partWords(w, l.p),
        t: true,
        f16,
      },
      c: {
        name: "dx",
        buffer: o.dx,
        offset: dxl.offset,
        stride: dxl.stride,
        words: dxl.offset + (o.rows - 1) * dxl.stride + w.cols,
      },
      acc: i > 0 || !!o.accumulate,
      tune: tuneFor(arena, "dx", { m: o.rows, n: w.cols, k: l.p.outputs }, o.tune),
      done: o.done,
      label: label + (launches.length > 1 ? `.${i}` : ""),
    })
  );
}

/**
 * dW[n, k] = sum over m < rows of dY[m, n] X[m, k] for n < N, k < K (the gradient of y = x W^T
 * with respect to W, [N, K] f32, HF Linear layout), or with `accumulate` dW += that (tied or
 * shared weights add their gradients up). `dyRows` and `xRows` place the rows inside wider
 * tensors (default: packed rows of N and K); a dY offset picks which columns, so a large W's
 * gradient can be computed in row blocks.
 *
 * @example
 * ```ts
 * import { matmulDw } from "./matmul.ts";
 * // dw = dy^T x over 4096 tokens for a [512, 512] weight:
 * // matmulDw(arena, { dy, x, dw, rows: 4096, n: 512, k: 512 })
 * ```
 */
export function matmulDw(arena: Arena, o: {
  dy: Tensor;
  x: Tensor;
  dw: Tensor;
  rows: number;
  /** Rows of dW (columns of dY). */
  n: number;
  /** Columns of dW (of X). */
  k: number;
  accumulate?: boolean;
  /** Row r of dY starts at element `offset + r * stride` of dY. */
  dyRows?: Rows;
  /** Row r of X starts at element `offset + r * stride` of X. */
  xRows?: Rows;
  done?: GPUBuffer;
  label?: string;
  /** Tile and split instead of the measured ones (benchmarks). */
  tune?: MatmulTune;
}): Dispatch[] {
  const label = o.label ?? "matmul_dw";
  const dyl = o.dyRows ?? { offset: 0, stride: o.n };
  const xl = o.xRows ?? { offset: 0, stride: o.k };
  checkRows(label, "dy", dyl, o.n);
  checkRows(label, "x", xl, o.k);
  return product(arena, {
    m: o.n,
    n: o.k,
    k: o.rows,
    a: {
      name: "dy",
      buffer: o.dy,
      offset: dyl.offset,
      stride: dyl.stride,
      words: dyl.offset + (o.rows - 1) * dyl.stride + o.n,
      t: true,
    },
    b: {
      name: "x",
      buffer: o.x,
      offset: xl.offset,
      stride: xl.stride,
      words: xl.offset + (o.rows - 1) * xl.stride + o.k,
      t: true,
      f16: false,
    },
    c: { name: "dw", buffer: o.dw, offset: 0, stride: o.k, words: o.n * o.k },
    acc: !!o.accumulate,
    tune: tuneFor(arena, "dw", { m: o.n, n: o.k, k: o.rows }, o.tune),
    done: o.done,
    label,
  });
}
