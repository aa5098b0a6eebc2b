import assert from "node:assert/strict";
import { run } from "../kernels/dispatch.ts";
import {
  attentionBackward,
  attentionTrain,
  type TrainAttentionShape,
} from "../kernels/attention_backward.ts";
import {
  attentionBackwardRef,
  type AttentionRefShape,
  attentionTrainRef,
} from "../kernels/reference_train.ts";
import { attentionRef, relativeError } from "../kernels/reference.ts";
import { ShapeError } from "../gpu/errors.ts";
import {
  assertClose,
  f32,
  poisoned,
  randomArray,
  readF32,
  rng,
  testArena,
  u32,
} from "./helpers.ts";

const F32_TOL = 1e-5;

/** The columns [from, to) of each row of a row-major array with rows of `width`. */
function columns(x: ArrayLike<number>, width: number, from: number, to: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / width; r++) {
    for (let c = from; c < to; c++) out.push(x[r * width + c]);
  }
  return out;
}

Deno.test("attentionBackwardRef() matches central finite differences of attentionTrainRef()", () => {
  const o: AttentionRefShape = { nHeads: 4, nKvHeads: 2, headDim: 4, seqLen: 5 };
  const rows = 2 * o.seqLen;
  const r = rng(1);
  const qkv = Float64Array.from({ length: rows * 8 * o.headDim }, () => r(-1.5, 1.5));
  // loss = sum(out * w): its gradient with respect to out is w.
  const w = Float64Array.from({ length: rows * o.nHeads * o.headDim }, () => r());
  const loss = (x: Float64Array) =>
    attentionTrainRef(x, o).out.reduce((s, v, i) => s + v * w[i], 0);
  const grad = attentionBackwardRef(qkv, w, o);
  const eps = 1e-5;
  const numeric = new Float64Array(qkv.length);
  for (let i = 0; i < qkv.length; i++) {
    const x = Float64Array.from(qkv);
    x[i] = qkv[i] + eps;
    const up = loss(x);
    x[i] = qkv[i] - eps;
    numeric[i] = (up - loss(x)) / (2 * eps);
  }
  const err = relativeError(grad, numeric);
  assert.ok(err < 1e-8, `relative error ${err}`);
  // Every part of the gradient is exercised: q, k and v all get nonzero gradients.
  for (const [from, to] of [[0, 16], [16, 24], [24, 32]]) {
    assert.ok(columns(grad, 32, from, to).some((v) => Math.abs(v) > 1e-3));
  }
});

Deno.test("attentionTrainRef() agrees with the decode attention reference on each sequence", () => {
  const o: AttentionRefShape = { nHeads: 6, nKvHeads: 2, headDim: 8, seqLen: 7 };
  const stride = 10 * o.headDim;
  const qkv = randomArray(3 * o.seqLen * stride, 2, 2);
  const { out } = attentionTrainRef(qkv, o);
  for (let b = 0; b < 3; b++) {
    const seq = qkv.subarray(b * o.seqLen * stride, (b + 1) * o.seqLen * stride);
    const ref = attentionRef(
      columns(seq, stride, 0, 6 * o.headDim),
      columns(seq, stride, 6 * o.headDim, 8 * o.headDim),
      columns(seq, stride, 8 * o.headDim, 10 * o.headDim),
      o,
    );
    const width = o.nHeads * o.headDim;
    assert.ok(
      relativeError(out.subarray(b * o.seqLen * width, (b + 1) * o.seqLen * width), ref) < 1e-12,
    );
  }
});

/** Runs the GPU forward and backward on random data and compares with the f64 references. */
async function checkTrainAttention(s: TrainAttentionShape, seed: number) {
  const a = await testArena();
  const { nHeads, nKvHeads, headDim: hd, rows } = s;
  const width = (nHeads + 2 * nKvHeads) * hd;
  const qkv = randomArray(rows * width, seed, 2);
  const dOut = randomArray(rows * nHeads * hd, seed + 1);
  const out = poisoned(a, rows * nHeads * hd);
  const lse = poisoned(a, rows * nHeads);
  const dqkv = poisoned(a, rows * width);
  const qkvT = f32(a, qkv);
  run(a.gpu, [
    ...attentionTrain(a, { ...s, qkv: qkvT, out, lse }),
    ...attentionBackward(a, {
      ...s,
      qkv: qkvT,
      out,
      lse,
      dOut: f32(a, dOut),
      delta: poisoned(a, rows * nHeads),
      dqkv,
    }),
  ], "t");
  const ref = attentionTrainRef(qkv, s);
  assertClose(await readF32(a, out, rows * nHeads * hd), ref.out, F32_TOL, "out");
  assertClose(await readF32(a, lse, rows * nHeads), ref.lse, F32_TOL, "lse");
  const grad = await readF32(a, dqkv, rows * width);
  const refGrad = attentionBackwardRef(qkv, dOut, s);
  const q = nHeads * hd, k = q + nKvHeads * hd;
  for (const [part, from, to] of [["dq", 0, q], ["dk", q, k], ["dv", k, width]] as const) {
    const got = columns(grad, width, from, to), want = columns(refGrad, width, from, to);
    // With one row per sequence, dq and dk are zero: the softmax of one score is constant.
    if (want.every((v) => Math.abs(v) < 1e-12)) {
      assert.ok(got.every((v) => Math.abs(v) < 1e-6), `${part} is not zero`);
    } else {
      assertClose(got, want, F32_TOL, part);
    }
  }
}

const cases: [string, TrainAttentionShape][] = [
  ["T 37, 6/2 heads, hd 12, B 2", { seqLen: 37, rows: 74, nHeads: 6, nKvHeads: 2, headDim: 12 }],
  ["T 37, 6/2 heads, hd 72, B 2", { seqLen: 37, rows: 74, nHeads: 6, nKvHeads: 2, headDim: 72 }],
  ["T 33, 4/1 heads, hd 256, B 1", { seqLen: 33, rows: 33, nHeads: 4, nKvHeads: 1, headDim: 256 }],
  ["T 64, 2/2 heads, hd 64, B 3", { seqLen: 64, rows: 192, nHeads: 2, nKvHeads: 2, headDim: 64 }],
  ["T 1, 2/1 heads, hd 8, B 4", { seqLen: 1, rows: 4, nHeads: 2, nKvHeads: 1, headDim: 8 }],
];
for (const [name, s] of cases) {
  Deno.test(`attentionTrain() and attentionBackward() match the f64 references: ${name}`, () =>
    checkTrainAttention(s, s.seqLen + s.headDim));
}

Deno.test("attentionBackward() gives the same bits on every run", async () => {
  const a = await testArena();
  const s = { seqLen: 40, rows: 80, nHeads: 4, nKvHeads: 1, headDim: 16 };
  const width = 6 * 16;
  const qkv = f32(a, randomArray(80 * width, 3, 2));
  const out = poisoned(a, 80 * 64), lse = poisoned(a, 80 * 4);
  const dOut = f32(a, randomArray(80 * 64, 4));
  const delta = poisoned(a, 80 * 4);
  const results = [];
  for (let i = 0; i < 2; i++) {
    const dqkv = poisoned(a, 80 * width);
    run(a.gpu, [
      ...attentionTrain(a, { ...s, qkv, out, lse }),
      ...attentionBackward(a, { ...s, qkv, out, lse, dOut, delta, dqkv }),
    ], "t");
    results.push(await readF32(a, dqkv, 80 * width));
  }
  assert.deepEqual(results[0], results[1]);
});

Deno.test("attentionTrain() and attentionBackward() write nothing when done", async () => {
  const a = await testArena();
  const s = { seqLen: 5, rows: 5, nHeads: 2, nKvHeads: 1, headDim: 8 };
  const qkv = f32(a, randomArray(5 * 32, 5));
  const out = poisoned(a, 5 * 16), lse = poisoned(a, 10), dqkv = poisoned(a, 5 * 32);
  const done = u32(a, [1]).buffer;
  run(a.gpu, [
    ...attentionTrain(a, { ...s, qkv, out, lse, done }),
    ...attentionBackward(a, {
      ...s,
      qkv,
      out,
      lse,
      dOut: f32(a, randomArray(5 * 16, 6)),
      delta: poisoned(a, 10),
      dqkv,
      done,
    }),
  ], "t");
  for (const [t, n] of [[out, 80], [lse, 10], [dqkv, 160]] as const) {
    assert.ok((await readF32(a, t, n)).every(Number.isNaN));
  }
});

Deno.test("attentionTrain() and attentionBackward() refuse bad shapes and small buffers", async () => {
  const a = await testArena();
  const s = { seqLen: 8, rows: 16, nHeads: 4, nKvHeads: 2, headDim: 16 };
  const t = (n: number) => poisoned(a, n);
  const ok = { qkv: t(16 * 128), out: t(16 * 64), lse: t(16 * 4) };
  assert.throws(() => attentionTrain(a, { ...s, ...ok, headDim: 18 }), ShapeError);
  assert.throws(() => attentionTrain(a, { ...s, ...ok, headDim: 260 }), ShapeError);
  assert.throws(() => attentionTrain(a, { ...s, ...ok, nKvHeads: 3 }), ShapeError);
  assert.throws(() => attentionTrain(a, { ...s, ...ok, rows: 12 }), ShapeError);
  assert.throws(() => attentionTrain(a, { ...s, ...ok, lse: t(16 * 4 - 1) }), /lse holds 63/);
  assert.throws(
    () =>
      attentionBackward(a, {
        ...s,
        ...ok,
        dOut: t(16 * 64),
        delta: t(16 * 4),
        dqkv: t(16 * 128 - 4),
      }),
    /dqkv holds 2044/,
  );
});
