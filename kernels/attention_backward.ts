/**
 * Causal grouped-query attention for training: a forward that also writes each (row, head)'s
 * logsumexp, and the backward that recomputes the probabilities from it (flash-attention
 * style: nothing of size seqLen^2 is stored). Sequences are stacked: `rows` = B * `seqLen`, and
 * a row attends to the rows of its own sequence up to itself.
 * @module
 */
import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import { type Dispatch, doneFlag, f32bits, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** Query rows and keys per block of the training attention kernels. */
export const ATTENTION_TRAIN_BLOCK = 32;

/** Geometry of a training attention launch. */
export interface TrainAttentionShape {
  /** Query heads. */
  nHeads: number;
  /** Key/value heads; a divisor of nHeads (grouped-query attention when fewer). */
  nKvHeads: number;
  /** Width of one head: a multiple of 4, at most 256. */
  headDim: number;
  /** Rows of one sequence. */
  seqLen: number;
  /** All rows: B sequences of seqLen rows, stacked. */
  rows: number;
}

function check(label: string, o: TrainAttentionShape): number {
  if (o.headDim > 256 || o.headDim < 4 || o.headDim % 4 !== 0) {
    throw new ShapeError(`${label}: headDim must be <= 256 and a multiple of 4, got ${o.headDim}`);
  }
  if (o.nKvHeads < 1 || o.nHeads % o.nKvHeads !== 0) {
    throw new ShapeError(
      `${label}: nHeads (${o.nHeads}) must be a multiple of nKvHeads (${o.nKvHeads})`,
    );
  }
  if (o.seqLen < 1 || o.rows % o.seqLen !== 0) {
    throw new ShapeError(
      `${label}: rows (${o.rows}) must be a whole number of sequences of seqLen (${o.seqLen}) rows`,
    );
  }
  const batch = o.rows / o.seqLen;
  if (batch < 1 || batch > 65535 || o.nHeads > 65535) {
    throw new ShapeError(`${label}: ${batch} sequences and ${o.nHeads} heads: each at most 65535`);
  }
  return batch;
}

/**
 * Rows (keys or queries) per staged chunk of the second product of a kernel whose chunk buffer
 * holds `vec4s` vec4s: a multiple of 4 (probabilities are read four at a time), at most a block.
 */
function chunkRows(vec4s: number, headDim: number): number {
  return Math.min(ATTENTION_TRAIN_BLOCK, 4 * Math.floor(vec4s / (headDim / 4) / 4));
}

const params = (o: TrainAttentionShape) => [
  o.seqLen,
  o.nHeads,
  o.nKvHeads,
  f32bits(1 / Math.sqrt(o.headDim)),
];

/**
 * Forward of causal grouped-query attention over whole sequences, for training: from the fused
 * rows `qkv` [rows, (nHeads + 2 nKvHeads) headDim] (q heads, then k, then v, after RoPE) it
 * writes `out` [rows, nHeads headDim] and `lse` [rows, nHeads], the logsumexp of each row's
 * scaled scores (scale 1/sqrt(headDim)), which {@link attentionBackward} needs.
 *
 * @example
 * ```ts
 * import { createGpu } from "../gpu/device.ts";
 * import { run } from "./dispatch.ts";
 * import { attentionTrain } from "./attention_backward.ts";
 * const gpu = await createGpu();
 * const a = gpu.arena("train");
 * const shape = { nHeads: 4, nKvHeads: 2, headDim: 16, seqLen: 8, rows: 16 };
 * const qkv = a.tensor("qkv", [16, 8 * 16]);
 * const out = a.tensor("out", [16, 4 * 16]), lse = a.tensor("lse", [16, 4]);
 * run(gpu, attentionTrain(a, { ...shape, qkv, out, lse }), "forward");
 * gpu.dispose();
 * ```
 */
export function attentionTrain(
  arena: Arena,
  o: TrainAttentionShape & {
    qkv: Tensor;
    out: Tensor;
    lse: Tensor;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const label = o.label ?? "attention_train";
  const batch = check(label, o);
  const hd = o.headDim;
  return [makeDispatch(arena, {
    kernel: "attention_train",
    code: wgsl.attentionTrain,
    constants: { HD: hd, CC: chunkRows(512, hd) },
    params: params(o),
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["qkv", o.qkv, "read", o.rows * (o.nHeads + 2 * o.nKvHeads) * hd],
      ["out", o.out, "write", o.rows * o.nHeads * hd],
      ["lse", o.lse, "write", o.rows * o.nHeads],
    ],
    workgroups: [Math.ceil(o.seqLen / ATTENTION_TRAIN_BLOCK), o.nHeads, batch],
    label,
  })];
}

/**
 * Backward of {@link attentionTrain}: from `dOut` [rows, nHeads headDim] and the forward's
 * `qkv`, `out` and `lse`, writes the gradient of the fused rows, `dqkv` [rows, (nHeads +
 * 2 nKvHeads) headDim] (every element: dq, dk, dv in the layout of qkv). `delta` [rows,
 * nHeads] is scratch (D = rowsum(dOut * out)). Two launches: dQ (and D), then dK and dV, each
 * summing over its rows, heads and blocks in a fixed order, without atomics, so the result has
 * the same bits on every run.
 *
 * @example
 * ```ts
 * import { createGpu } from "../gpu/device.ts";
 * import { run } from "./dispatch.ts";
 * import { attentionBackward, attentionTrain } from "./attention_backward.ts";
 * const gpu = await createGpu();
 * const a = gpu.arena("train");
 * const shape = { nHeads: 4, nKvHeads: 2, headDim: 16, seqLen: 8, rows: 16 };
 * const t = (name: string, n: number) => a.tensor(name, [16, n]);
 * const qkv = t("qkv", 128), out = t("out", 64), lse = t("lse", 4);
 * const dOut = t("dOut", 64), delta = t("delta", 4), dqkv = t("dqkv", 128);
 * run(gpu, [
 *   ...attentionTrain(a, { ...shape, qkv, out, lse }),
 *   ...attentionBackward(a, { ...shape, qkv, out, lse, dOut, delta, dqkv }),
 * ], "attention forward and backward");
 * gpu.dispose();
 * ```
 */
export function attentionBackward(
  arena: Arena,
  o: TrainAttentionShape & {
    qkv: Tensor;
    out: Tensor;
    lse: Tensor;
    dOut: Tensor;
    delta: Tensor;
    dqkv: Tensor;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const label = o.label ?? "attention_backward";
  const batch = check(label, o);
  const hd = o.headDim;
  const done = doneFlag(arena.gpu, o.done);
  const fused = o.rows * (o.nHeads + 2 * o.nKvHeads) * hd;
  const perHead = o.rows * o.nHeads;
  const blocks = Math.ceil(o.seqLen / ATTENTION_TRAIN_BLOCK);
  return [
    makeDispatch(arena, {
      kernel: "attention_backward_dq",
      code: wgsl.attentionBackwardDq,
      constants: { HD: hd, CC: chunkRows(512, hd) },
      params: params(o),
      bindings: [
        done,
        ["qkv", o.qkv, "read", fused],
        ["out", o.out, "read", perHead * hd],
        ["dOut", o.dOut, "read", perHead * hd],
        ["lse", o.lse, "read", perHead],
        ["delta", o.delta, "write", perHead],
        ["dqkv", o.dqkv, "write", fused],
      ],
      workgroups: [blocks, o.nHeads, batch],
      label: `${label}.dq`,
    }),
    makeDispatch(arena, {
      kernel: "attention_backward",
      code: wgsl.attentionBackward,
      constants: { HD: hd, CC: chunkRows(256, hd) },
      params: params(o),
      bindings: [
        done,
        ["qkv", o.qkv, "read", fused],
        ["dOut", o.dOut, "read", perHead * hd],
        ["lse", o.lse, "read", perHead],
        ["delta", o.delta, "read", perHead],
        ["dqkv", o.dqkv, "write", fused],
      ],
      workgroups: [blocks, o.nKvHeads, batch],
      label: `${label}.dkv`,
    }),
  ];
}
