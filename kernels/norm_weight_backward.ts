import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import { sumRows } from "./sum_rows.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Vectors per block of the weight-gradient reduction: at least 32, so each workgroup has real
 * work, and few enough blocks (at most 256) that the second pass is short. Depends only on the
 * count, so the summation order (and the bits) of a given shape never change.
 */
export function normWeightBlock(nVec: number): number {
  return Math.max(32, Math.ceil(nVec / 256));
}

/** Blocks of the weight-gradient reduction over `nVec` vectors: rows of its partial sums. */
export function normWeightBlocks(nVec: number): number {
  return Math.max(1, Math.ceil(nVec / normWeightBlock(nVec)));
}

/** Where the normalised vectors of a norm's input lie (see norm_weight_backward.wgsl). */
export interface NormVectors {
  /** Vectors in all (rows times vectors per row). */
  nVec: number;
  /** Vectors per row: 1 for rmsnorm, the query or key heads for qk_norm. */
  perRow: number;
  /** Width of one vector (the weight's length). */
  dim: number;
  /** Floats from one row of x and dy to the next. */
  xStride: number;
  /** Float offset of a row's first vector. */
  xOffset: number;
  /** rstd entries from one row to the next. */
  sStride: number;
  /** Offset of a row's first vector in rstd. */
  sOffset: number;
}

/**
 * The gradient of an RMSNorm weight g, dWeight[dWeightOffset + c] (+)= sum over vectors v of
 * dy[v, c] x[v, c] rstd[v], without float atomics: fixed blocks of vectors are summed into
 * `partial` (one row per block), then {@link sumRows} adds the rows in order. Two dispatches;
 * the bits depend only on the shapes.
 */
export function normWeightBackward(
  arena: Arena,
  o: NormVectors & {
    /** The forward's input. */
    x: Tensor;
    /** The gradient of the forward's output, laid out like x. */
    dy: Tensor;
    /** 1/rms of each vector, as the input-gradient kernels write it. */
    rstd: Tensor;
    /** Receives the gradient at dWeightOffset.. dWeightOffset + dim. */
    dWeight: Tensor;
    dWeightOffset?: number;
    /** Adds into dWeight (several launches in a step feed one weight's gradient). */
    accumulate?: boolean;
    /** Scratch of [normWeightBlocks(nVec), dim] floats; allocated in `arena` when absent. */
    partial?: Tensor;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const label = o.label ?? "norm_weight_backward";
  const blocks = normWeightBlocks(o.nVec);
  const partial = o.partial ?? arena.tensor(`${label} partial`, [blocks, o.dim]);
  const rows = Math.ceil(o.nVec / o.perRow);
  const xWords = rows === 0 ? 0 : (rows - 1) * o.xStride + o.xOffset + o.perRow * o.dim;
  const sWords = rows === 0 ? 0 : (rows - 1) * o.sStride + o.sOffset + o.perRow;
  const wx = 64, wy = 4;
  return [
    makeDispatch(arena, {
      kernel: "norm_weight_backward",
      code: wgsl.normWeightBackward,
      constants: { WX: wx, WY: wy },
      params: [
        o.nVec,
        o.perRow,
        o.dim,
        o.xStride,
        o.xOffset,
        o.sStride,
        o.sOffset,
        normWeightBlock(o.nVec),
      ],
      bindings: [
        doneFlag(arena.gpu, o.done),
        ["x", o.x, "read", xWords],
        ["dy", o.dy, "read", xWords],
        ["rstd", o.rstd, "read", sWords],
        ["partial", partial, "write", blocks * o.dim],
      ],
      workgroups: [Math.ceil(o.dim / wx), blocks],
      label: `${label}.partial`,
    }),
    ...sumRows(arena, {
      x: partial,
      out: o.dWeight,
      rows: blocks,
      cols: o.dim,
      outOffset: o.dWeightOffset,
      accumulate: o.accumulate,
      done: o.done,
      label: `${label}.sum`,
    }),
  ];
}
