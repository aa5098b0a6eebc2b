// The backward kernels against their CPU references, and the references against finite
// differences of the forwards, so a wrong derivation cannot hide in both.
import assert from "node:assert/strict";
import { type Dispatch, run } from "../kernels/dispatch.ts";
import { rmsnormBackward } from "../kernels/rmsnorm_backward.ts";
import { qkNormBackward } from "../kernels/qk_norm_backward.ts";
import { swigluBackward } from "../kernels/swiglu_backward.ts";
import { siluResidual } from "../kernels/silu_residual.ts";
import { siluBackward } from "../kernels/silu_backward.ts";
import { ropeBackward } from "../kernels/rope_backward.ts";
import { embedBackward, embedBackwardPlan } from "../kernels/embed_backward.ts";
import { crossEntropy, IGNORE_TARGET } from "../kernels/cross_entropy.ts";
import { sumRows } from "../kernels/sum_rows.ts";
import { axpy } from "../kernels/axpy.ts";
import { ropeTable } from "../kernels/rope_kv.ts";
import {
  embedRef,
  qkNormRef,
  relativeError,
  rmsnormRef,
  ropeRef,
  siluResidualRef,
  swigluRef,
} from "../kernels/reference.ts";
import {
  crossEntropyBackwardRef,
  crossEntropyRef,
  embedBackwardRef,
  qkNormBackwardRef,
  rmsnormBackwardRef,
  ropeBackwardRef,
  siluBackwardRef,
  swigluBackwardRef,
} from "../kernels/reference_backward.ts";
import { NO_TOKEN } from "../kernels/state.ts";
import { ShapeError } from "../gpu/errors.ts";
import type { Arena, Tensor } from "../gpu/arena.ts";
import {
  assertClose,
  f32,
  poisoned,
  randomArray,
  readF32,
  rng,
  testArena,
  TINY_LLAMA3,
  u32,
} from "./helpers.ts";

const F32_TOL = 1e-5;
const FD_TOL = 1e-7;
const EPS = 1e-5;

/** a + b elementwise: what an accumulating kernel should leave. */
function plus(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i]);
}

/** f64 copy of values in [-scale, scale). */
function random64(n: number, seed: number, scale = 1): Float64Array {
  return Float64Array.from(randomArray(n, seed, scale));
}

/**
 * The central-difference gradient of f at x (f64), h = 1e-5: truncation error ~h^2 and
 * rounding ~1e-16/h, both far under FD_TOL for these O(1) functions.
 */
function numericGradient(f: (x: Float64Array) => number, x: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    x[i] = v + h;
    const up = f(x);
    x[i] = v - h;
    const down = f(x);
    x[i] = v;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

/** sum(w * y): a scalar loss whose gradient with respect to y is w. */
function dot(w: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += w[i] * y[i];
  return s;
}

function assertFd(analytic: ArrayLike<number>, numeric: ArrayLike<number>, what: string) {
  const err = relativeError(analytic, numeric);
  assert.ok(err < FD_TOL, `${what}: relative error against finite differences ${err}`);
}

// ---- CPU references against finite differences of the forwards ----

Deno.test("rmsnormBackwardRef() matches finite differences of rmsnormRef() in x and g", () => {
  const rows = 3, dim = 7;
  const x = random64(rows * dim, 1, 2), g = random64(dim, 2), dy = random64(rows * dim, 3);
  const { dx, dg } = rmsnormBackwardRef(x, g, dy, { dim, eps: EPS });
  assertFd(dx, numericGradient((v) => dot(dy, rmsnormRef(v, g, dim, EPS)), x), "dx");
  assertFd(dg, numericGradient((v) => dot(dy, rmsnormRef(x, v, dim, EPS)), g), "dg");
});

Deno.test("qkNormBackwardRef() matches finite differences of qkNormRef() in qkv and both weights", () => {
  const shape = { nHeads: 2, nKvHeads: 1, headDim: 6, eps: EPS };
  const rows = 2, width = (2 + 2) * 6;
  const qkv = random64(rows * width, 4, 2), dy = random64(rows * width, 5);
  const qWeight = random64(6, 6), kWeight = random64(6, 7);
  const b = qkNormBackwardRef(qkv, dy, { ...shape, qWeight, kWeight });
  const fwd = (v: Float64Array, q: ArrayLike<number>, k: ArrayLike<number>) =>
    dot(dy, qkNormRef(v, { ...shape, qWeight: q, kWeight: k }));
  assertFd(b.dqkv, numericGradient((v) => fwd(v, qWeight, kWeight), qkv), "dqkv");
  assertFd(b.dgq, numericGradient((v) => fwd(qkv, v, kWeight), qWeight), "dgq");
  assertFd(b.dgk, numericGradient((v) => fwd(qkv, qWeight, v), kWeight), "dgk");
});

Deno.test("swigluBackwardRef() matches finite differences of swigluRef()", () => {
  const rows = 3, n = 5;
  const gu = random64(rows * 2 * n, 8, 4), dout = random64(rows * n, 9);
  assertFd(
    swigluBackwardRef(gu, dout, n),
    numericGradient((v) => dot(dout, swigluRef(v, n)), gu),
    "dgu",
  );
});

Deno.test("siluBackwardRef() matches finite differences of siluResidualRef() on a column window", () => {
  const rows = 3, n = 4, stride = 11, offset = 5;
  const x = random64(rows * stride, 31, 4),
    res = random64(rows * n, 32),
    dy = random64(rows * n, 33);
  const got = siluBackwardRef(x, dy, n, stride, offset);
  assertFd(
    got,
    numericGradient((v) => dot(dy, siluResidualRef(v, res, n, stride, offset)), x),
    "dx",
  );
  assert.equal(got[0], 0, "columns outside the window get no gradient");
});

for (const scaling of [null, TINY_LLAMA3]) {
  Deno.test(`ropeBackwardRef() matches finite differences of ropeRef() (${scaling?.type ?? "no"} scaling)`, () => {
    const shape = { nHeads: 2, nKvHeads: 1, headDim: 8, theta: 1e4, scaling };
    const positions = [0, 7, 130];
    const width = (2 + 2) * 8;
    const qkv = random64(positions.length * width, 10), dy = random64(qkv.length, 11);
    const fwd = (v: Float64Array) => {
      const y = Float64Array.from(v);
      positions.forEach((p, r) => {
        for (let h = 0; h < 3; h++) {
          ropeRef(y.subarray(r * width + h * 8, r * width + h * 8 + 8), p, shape);
        }
      });
      return dot(dy, y);
    };
    assertFd(ropeBackwardRef(dy, positions, shape), numericGradient(fwd, qkv), "dqkv");
  });
}

Deno.test("embedBackwardRef() matches finite differences of embedRef()", () => {
  const vocab = 6, dim = 3;
  const ids = [4, 1, 4, 9, 0, 4]; // repeats, and 9 outside the vocabulary
  // Multiples of 1/64 with steps of 1: the table stays exact in f32, and embedding is linear,
  // so the differences are exact too.
  const r = rng(12);
  const table = Float32Array.from({ length: vocab * dim }, () => Math.round(r(-64, 64)) / 64);
  const dh = random64(ids.length * dim, 13);
  const numeric = new Float64Array(table.length);
  for (let i = 0; i < table.length; i++) {
    const v = table[i];
    table[i] = v + 1;
    const up = dot(dh, embedRef(table, dim, ids));
    table[i] = v - 1;
    const down = dot(dh, embedRef(table, dim, ids));
    table[i] = v;
    numeric[i] = (up - down) / 2;
  }
  assertFd(embedBackwardRef(ids, dh, { vocab, dim }), numeric, "dE");
});

Deno.test("crossEntropyBackwardRef() matches finite differences of crossEntropyRef()", () => {
  const rows = 4, vocab = 9, scale = 0.3;
  const logits = random64(rows * vocab, 14, 3);
  const targets = [3, IGNORE_TARGET, 0, 8];
  const loss = (v: Float64Array) =>
    scale * crossEntropyRef(v, targets, vocab).reduce((a, b) => a + b);
  assertFd(
    crossEntropyBackwardRef(logits, targets, { vocab, scale }),
    numericGradient(loss, logits),
    "dlogits",
  );
});

// ---- GPU kernels against the references ----

for (const [rows, dim] of [[5, 37], [5, 300], [300, 76]]) {
  Deno.test(`rmsnormBackward() matches the CPU reference (${rows} rows of ${dim})`, async () => {
    const a = await testArena();
    const x = randomArray(rows * dim, 20, 3),
      g = randomArray(dim, 21),
      dy = randomArray(rows * dim, 22);
    const dx = poisoned(a, rows * dim), dg = poisoned(a, dim);
    const xb = f32(a, x), gb = f32(a, g), dyb = f32(a, dy);
    const o = { x: xb, weight: gb, dy: dyb, rows, dim, eps: EPS };
    run(a.gpu, rmsnormBackward(a, { ...o, dx, dWeight: dg }), "t");
    const ref = rmsnormBackwardRef(x, g, dy, { dim, eps: EPS });
    assertClose(await readF32(a, dx, rows * dim), ref.dx, F32_TOL, "dx");
    assertClose(await readF32(a, dg, dim), ref.dg, F32_TOL, "dg");

    // Accumulating: both gradients add to what is there.
    const dx0 = randomArray(rows * dim, 23), dg0 = randomArray(dim, 24);
    const dxAcc = f32(a, dx0), dgAcc = f32(a, dg0);
    run(
      a.gpu,
      rmsnormBackward(a, {
        ...o,
        dx: dxAcc,
        dWeight: dgAcc,
        accumulateDx: true,
        accumulateDWeight: true,
      }),
      "t",
    );
    assertClose(await readF32(a, dxAcc, rows * dim), plus(dx0, ref.dx), F32_TOL, "dx +=");
    assertClose(await readF32(a, dgAcc, dim), plus(dg0, ref.dg), F32_TOL, "dg +=");
  });
}

for (const [rows, headDim] of [[5, 76], [90, 38]]) {
  Deno.test(`qkNormBackward() matches the CPU reference in place, values untouched (${rows} rows, headDim ${headDim})`, async () => {
    const a = await testArena();
    const shape = { nHeads: 3, nKvHeads: 2, headDim, eps: EPS };
    const width = (3 + 4) * headDim;
    const qkv = randomArray(rows * width, 25, 2), dy = randomArray(rows * width, 26);
    const w = randomArray(2 * headDim, 27);
    const ref = qkNormBackwardRef(qkv, dy, {
      ...shape,
      qWeight: w.subarray(0, headDim),
      kWeight: w.subarray(headDim),
    });
    const refDg = new Float64Array([...ref.dgq, ...ref.dgk]);
    for (const accumulate of [false, true]) {
      const dg0 = randomArray(2 * headDim, 28);
      const dqkv = f32(a, dy);
      const dg = accumulate ? f32(a, dg0) : poisoned(a, 2 * headDim);
      run(
        a.gpu,
        qkNormBackward(a, {
          ...shape,
          x: f32(a, qkv),
          dqkv,
          weight: f32(a, w),
          dWeight: dg,
          rows,
          accumulate,
        }),
        "t",
      );
      const got = await readF32(a, dqkv, rows * width);
      assertClose(got, ref.dqkv, F32_TOL, "dqkv");
      for (let r = 0; r < rows; r++) {
        const v = r * width + 5 * headDim;
        assert.deepEqual(got.subarray(v, v + 2 * headDim), dy.subarray(v, v + 2 * headDim));
      }
      const want = accumulate ? plus(dg0, refDg) : refDg;
      assertClose(
        await readF32(a, dg, 2 * headDim),
        want,
        F32_TOL,
        `dWeight, accumulate ${accumulate}`,
      );
    }
  });
}

Deno.test("swigluBackward() matches the CPU reference, finite for gates of +-100", async () => {
  const a = await testArena();
  const rows = 5, n = 301;
  const gu = randomArray(rows * 2 * n, 29, 4);
  gu[0] = 100;
  gu[1] = -100;
  gu[2 * n + 5] = 95;
  const dout = randomArray(rows * n, 30);
  const dgu = poisoned(a, rows * 2 * n);
  run(a.gpu, swigluBackward(a, { gu: f32(a, gu), dout: f32(a, dout), dgu, rows, n }), "t");
  assertClose(await readF32(a, dgu, rows * 2 * n), swigluBackwardRef(gu, dout, n), F32_TOL, "dgu");
});

Deno.test("siluResidual() and siluBackward() match the CPU references on each head's columns, finite at +-100", async () => {
  const a = await testArena();
  const rows = 7, n = 131, heads = 3, stride = heads * n;
  const x = randomArray(rows * stride, 34, 4);
  x[n] = 100;
  x[n + 1] = -100;
  const res = randomArray(rows * n, 35), dy = randomArray(rows * n, 36);
  const xT = f32(a, x), resT = f32(a, res), dyT = f32(a, dy);
  const dx = f32(a, new Float32Array(rows * stride));
  let want: Float64Array = new Float64Array(rows * stride);
  for (let j = 0; j < heads; j++) {
    const out = poisoned(a, rows * n);
    const offset = j * n;
    run(a.gpu, siluResidual(a, { x: xT, res: resT, out, rows, n, stride, offset }), "fwd");
    assertClose(
      await readF32(a, out, rows * n),
      siluResidualRef(x, res, n, stride, offset),
      F32_TOL,
      `out, head ${j}`,
    );
    run(a.gpu, siluBackward(a, { x: xT, dy: dyT, dx, rows, n, stride, offset }), "bwd");
    want = plus(want, siluBackwardRef(x, dy, n, stride, offset));
  }
  // Each launch wrote only its head's columns; together they fill the stacked gradient.
  assertClose(await readF32(a, dx, rows * stride), want, F32_TOL, "dx");
  assert.throws(
    () => siluResidual(a, { x: xT, res: resT, out: resT, rows, n, stride, offset: 2 * n + 1 }),
    /columns 263\.\.394 exceed rows of 393/,
  );
});

for (const scaling of [null, TINY_LLAMA3, { type: "linear", factor: 4 } as const]) {
  Deno.test(`ropeBackward() matches the CPU reference in place (${scaling?.type ?? "no"} scaling)`, async () => {
    const a = await testArena();
    const nHeads = 3, nKvHeads = 1, headDim = 38, capacity = 150;
    const positions = [0, 1, 149, 150, 77]; // 150 is past the table: left alone
    const width = (nHeads + 2 * nKvHeads) * headDim;
    const dy = randomArray(positions.length * width, 31);
    const dqkv = f32(a, dy);
    const config = { headDim, ropeTheta: 1e4, ropeScaling: scaling };
    run(
      a.gpu,
      ropeBackward(a, {
        nHeads,
        nKvHeads,
        headDim,
        capacity,
        positions: u32(a, positions),
        rope: f32(a, ropeTable(capacity, config)),
        dqkv,
        rows: positions.length,
      }),
      "t",
    );
    const ref = ropeBackwardRef(dy, positions, {
      nHeads,
      nKvHeads,
      headDim,
      theta: 1e4,
      scaling,
      capacity,
    });
    assertClose(await readF32(a, dqkv, dy.length), ref, F32_TOL, "dqkv");
  });
}

Deno.test("embedBackwardPlan() groups rows by id in row order and drops ids outside the vocabulary", () => {
  const plan = embedBackwardPlan([5, 2, 5, NO_TOKEN, 2, 0, 5], 6);
  const rows = 7;
  assert.equal(plan.length, 3 * rows + 2);
  assert.equal(plan[0], 3);
  assert.deepEqual(Array.from(plan.subarray(1, 4)), [0, 2, 5]);
  assert.deepEqual(Array.from(plan.subarray(1 + rows, 1 + rows + 4)), [0, 1, 3, 6]);
  assert.deepEqual(Array.from(plan.subarray(2 + 2 * rows, 2 + 2 * rows + 6)), [5, 1, 4, 0, 2, 6]);
});

Deno.test("embedBackward() adds each id's rows into dE and leaves other rows' bits alone", async () => {
  const a = await testArena();
  const vocab = 37, dim = 300;
  const ids = [5, 0, 36, NO_TOKEN, 5, 17, 5, 0, 36, 2, 5];
  const rows = ids.length;
  const dh = randomArray(rows * dim, 32);
  const dE0 = randomArray(vocab * dim, 33);
  const dE = f32(a, dE0);
  const plan = u32(a, embedBackwardPlan(ids, vocab));
  run(a.gpu, embedBackward(a, { plan, dh: f32(a, dh), dE, rows, dim, vocab }), "t");
  const got = await readF32(a, dE, vocab * dim);
  const ref = embedBackwardRef(ids.map((i) => i === NO_TOKEN ? -1 : i), dh, { vocab, dim });
  assertClose(got, plus(dE0, ref), F32_TOL, "dE");
  for (let v = 0; v < vocab; v++) {
    if (ids.includes(v)) continue;
    assert.deepEqual(got.subarray(v * dim, (v + 1) * dim), dE0.subarray(v * dim, (v + 1) * dim));
  }
});

/** Per-row losses in plain f64 (log of the sum of exponentials, no max trick). */
function directLoss(logits: ArrayLike<number>, targets: number[], vocab: number): number[] {
  return targets.map((t, r) => {
    if (t >= vocab) return 0;
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(logits[r * vocab + j]);
    return Math.log(s) - logits[r * vocab + t];
  });
}

async function runCrossEntropy(
  a: Arena,
  logits: Float32Array,
  targets: number[],
  vocab: number,
  o: { inPlace: boolean; scale?: number; scaleBy?: number },
): Promise<
  { loss: Float32Array; dlogits: Float32Array; total: number; logitsAfter: Float32Array }
> {
  const rows = targets.length;
  const lb = f32(a, logits);
  const loss = poisoned(a, rows);
  const dlogits = o.inPlace ? lb : poisoned(a, rows * vocab);
  const total = poisoned(a, 2);
  run(
    a.gpu,
    crossEntropy(a, {
      logits: lb,
      targets: u32(a, [7, ...targets]),
      targetsOffset: 1,
      loss,
      rows,
      vocab,
      dlogits: o.inPlace ? undefined : dlogits,
      scale: o.scale,
      scaleBy: o.scaleBy === undefined ? undefined : f32(a, new Float32Array([o.scaleBy])),
      total: { out: total, offset: 1 },
    }),
    "t",
  );
  return {
    loss: await readF32(a, loss, rows),
    dlogits: await readF32(a, dlogits, rows * vocab),
    total: (await readF32(a, total, 2))[1],
    logitsAfter: await readF32(a, lb, rows * vocab),
  };
}

for (const inPlace of [true, false]) {
  Deno.test(`crossEntropy() matches the CPU reference ${inPlace ? "in place" : "into another buffer"}: loss, gradient, ignored rows, total`, async () => {
    const a = await testArena();
    const vocab = 1001;
    const targets = [3, 1000, IGNORE_TARGET, 0, 512];
    const logits = randomArray(targets.length * vocab, 34, 5);
    const scale = 0.25, scaleBy = 0.5; // e.g. 1/4 targets, and a per-batch factor on the GPU
    const got = await runCrossEntropy(a, logits, targets, vocab, { inPlace, scale, scaleBy });
    const direct = directLoss(logits, targets, vocab);
    assertClose(got.loss, direct, F32_TOL, "loss against a direct f64 computation");
    assertClose(got.loss, crossEntropyRef(logits, targets, vocab), F32_TOL, "loss");
    assert.equal(got.loss[2], 0, "an ignored row has zero loss");
    const ref = crossEntropyBackwardRef(logits, targets, { vocab, scale: scale * scaleBy });
    assertClose(got.dlogits, ref, F32_TOL, "dlogits");
    for (let r = 0; r < targets.length; r++) {
      const row = got.dlogits.subarray(r * vocab, (r + 1) * vocab);
      if (targets[r] === IGNORE_TARGET) assert.ok(row.every((v) => v === 0), "ignored row");
      const sum = row.reduce((s, v) => s + v, 0);
      assert.ok(Math.abs(sum) < 1e-6, `row ${r} of dlogits sums to ${sum}`);
    }
    const sum = direct.reduce((s, v) => s + v, 0);
    assert.ok(Math.abs(got.total - sum) / sum < F32_TOL, `total ${got.total} != ${sum}`);
    if (!inPlace) assert.deepEqual(got.logitsAfter, logits, "the logits are left as they were");
  });
}

Deno.test("crossEntropy() over a 131075-word vocabulary and over logits of +-1e4 stays exact and finite", async () => {
  const a = await testArena();
  // Logits of -3e4 +- 8 underflow exp() unless the maximum is taken out first.
  for (const [vocab, spread, shift] of [[131075, 8, 0], [1001, 1e4, 0], [1001, 8, -3e4]]) {
    const targets = [vocab - 1, 0, 77];
    const logits = randomArray(targets.length * vocab, 35, spread).map((v) => v + shift);
    logits[2 * vocab + 77] = spread + shift; // a target that is the maximum
    const got = await runCrossEntropy(a, logits, targets, vocab, { inPlace: true });
    assertClose(got.loss, crossEntropyRef(logits, targets, vocab), F32_TOL, `loss, V ${vocab}`);
    const ref = crossEntropyBackwardRef(logits, targets, { vocab, scale: 1 });
    assertClose(got.dlogits, ref, F32_TOL, `dlogits, V ${vocab}, logits ${shift} +- ${spread}`);
  }
});

Deno.test("sumRows() and axpy() match the CPU reference, with scale and accumulate", async () => {
  const a = await testArena();
  for (const [rows, cols] of [[1000, 1], [300, 37], [3, 130]]) {
    const x = randomArray(rows * cols, 36);
    const out0 = randomArray(cols + 2, 37);
    const ref = new Float64Array(cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) ref[c] += x[r * cols + c];
    const xb = f32(a, x);
    const out = poisoned(a, cols + 2), acc = f32(a, out0);
    run(a.gpu, [
      ...sumRows(a, { x: xb, out, rows, cols, outOffset: 2 }),
      ...sumRows(a, { x: xb, out: acc, rows, cols, outOffset: 2, scale: -0.5, accumulate: true }),
    ], "t");
    const got = await readF32(a, out, cols + 2);
    assertClose(got.subarray(2), ref, F32_TOL, `sum of ${rows} x ${cols}`);
    assert.ok(got.subarray(0, 2).every(Number.isNaN), "words before outOffset are not written");
    assertClose(
      (await readF32(a, acc, cols + 2)).subarray(2),
      Float64Array.from(ref, (v, c) => out0[c + 2] - 0.5 * v),
      F32_TOL,
      "accumulated",
    );
  }
  const n = 1037;
  const x = randomArray(n, 38), y0 = randomArray(n, 39);
  const y = f32(a, y0);
  run(a.gpu, axpy(a, { x: f32(a, x), y, n, a: -2.5 }), "t");
  assertClose(
    await readF32(a, y, n),
    Float64Array.from(y0, (v, i) => v - 2.5 * x[i]),
    F32_TOL,
    "axpy",
  );
});

Deno.test("the reductions give the same bits on every run", async () => {
  const a = await testArena();
  const rows = 700, dim = 76, vocab = 1001;
  const x = f32(a, randomArray(rows * dim, 40, 3)), g = f32(a, randomArray(dim, 41));
  const dy = f32(a, randomArray(rows * dim, 42));
  const r = rng(44);
  const ids = Array.from({ length: rows }, () => Math.floor(r(0, 40))); // many repeats
  const plan = u32(a, embedBackwardPlan(ids, vocab));
  const targets = u32(a, ids);
  const ceLogits = randomArray(rows * vocab, 45, 4);
  const once = async () => {
    const dx = poisoned(a, rows * dim),
      dg = poisoned(a, dim),
      dE = f32(a, new Float32Array(vocab * dim));
    const lb = f32(a, ceLogits), loss = poisoned(a, rows), total = poisoned(a, 1);
    run(a.gpu, [
      ...rmsnormBackward(a, { x, weight: g, dy, dx, dWeight: dg, rows, dim, eps: EPS }),
      ...embedBackward(a, { plan, dh: dy, dE, rows, dim, vocab }),
      ...crossEntropy(a, { logits: lb, targets, loss, rows, vocab, total: { out: total } }),
    ], "t");
    return [
      await readF32(a, dg, dim),
      await readF32(a, dE, vocab * dim),
      await readF32(a, total, 1),
    ];
  };
  const first = await once();
  const second = await once();
  for (const [i, name] of ["dWeight", "dE", "total loss"].entries()) {
    assert.deepEqual(
      new Uint32Array(second[i].buffer, second[i].byteOffset, second[i].length),
      new Uint32Array(first[i].buffer, first[i].byteOffset, first[i].length),
      `${name} differs between runs`,
    );
  }
});

Deno.test("every backward kernel writes nothing when its done flag is set", async () => {
  const a = await testArena();
  const done = u32(a, [1]).buffer;
  const data = randomArray(64, 46);
  const x = f32(a, data);
  const shape = { nHeads: 2, nKvHeads: 1, headDim: 8 };
  // Outputs start as NaN, or for kernels that add or work in place, as finite data that must stay.
  const cases: [string, Tensor, (out: Tensor) => Dispatch[]][] = [
    ["rmsnorm dx", poisoned(a, 64), (dx) =>
      rmsnormBackward(a, {
        x,
        weight: x,
        dy: x,
        dx,
        dWeight: poisoned(a, 8),
        rows: 8,
        dim: 8,
        eps: EPS,
        done,
      })],
    ["rmsnorm dWeight", poisoned(a, 8), (dWeight) =>
      rmsnormBackward(a, {
        x,
        weight: x,
        dy: x,
        dx: poisoned(a, 64),
        dWeight,
        rows: 8,
        dim: 8,
        eps: EPS,
        done,
      })],
    ["qk_norm dqkv", f32(a, data), (dqkv) =>
      qkNormBackward(a, {
        ...shape,
        x,
        dqkv,
        weight: x,
        dWeight: poisoned(a, 16),
        rows: 2,
        eps: EPS,
        done,
      })],
    ["qk_norm dWeight", poisoned(a, 16), (dWeight) =>
      qkNormBackward(a, {
        ...shape,
        x,
        dqkv: f32(a, data),
        weight: x,
        dWeight,
        rows: 2,
        eps: EPS,
        done,
      })],
    [
      "silu_backward",
      poisoned(a, 32),
      (dx) => siluBackward(a, { x, dy: x, dx, rows: 2, n: 16, done }),
    ],
    [
      "silu_residual",
      poisoned(a, 32),
      (out) => siluResidual(a, { x, res: x, out, rows: 2, n: 16, done }),
    ],
    [
      "swiglu",
      poisoned(a, 64),
      (dgu) => swigluBackward(a, { gu: x, dout: x, dgu, rows: 2, n: 16, done }),
    ],
    ["rope", f32(a, data), (dqkv) =>
      ropeBackward(a, {
        ...shape,
        capacity: 4,
        positions: u32(a, [1, 2]),
        rope: x,
        dqkv,
        rows: 2,
        done,
      })],
    ["embed", f32(a, data), (dE) =>
      embedBackward(a, {
        plan: u32(a, embedBackwardPlan([1, 3], 8)),
        dh: x,
        dE,
        rows: 2,
        dim: 8,
        vocab: 8,
        done,
      })],
    [
      "cross_entropy logits",
      f32(a, data),
      (logits) =>
        crossEntropy(a, {
          logits,
          targets: u32(a, [1, 2]),
          loss: poisoned(a, 2),
          rows: 2,
          vocab: 32,
          done,
        }),
    ],
    [
      "cross_entropy loss",
      poisoned(a, 2),
      (loss) =>
        crossEntropy(a, {
          logits: f32(a, data),
          targets: u32(a, [1, 2]),
          loss,
          rows: 2,
          vocab: 32,
          done,
        }),
    ],
    ["cross_entropy total", poisoned(a, 1), (out) =>
      crossEntropy(a, {
        logits: f32(a, data),
        targets: u32(a, [1, 2]),
        loss: f32(a, new Float32Array(2)),
        rows: 2,
        vocab: 32,
        total: { out },
        done,
      })],
    ["cross_entropy dlogits", poisoned(a, 64), (dlogits) =>
      crossEntropy(a, {
        logits: x,
        dlogits,
        targets: u32(a, [1, 2]),
        loss: poisoned(a, 2),
        rows: 2,
        vocab: 32,
        done,
      })],
    ["sum_rows", poisoned(a, 8), (out) => sumRows(a, { x, out, rows: 8, cols: 8, done })],
    ["axpy", f32(a, data), (y) => axpy(a, { x, y, n: 64, done })],
  ];
  for (const [name, out, launch] of cases) {
    const before = await readF32(a, out, out.shape[0]);
    run(a.gpu, launch(out), "t");
    const after = await readF32(a, out, out.shape[0]);
    assert.deepEqual(
      new Uint32Array(after.buffer, after.byteOffset, after.length),
      new Uint32Array(before.buffer, before.byteOffset, before.length),
      `${name} wrote while done`,
    );
  }
});

Deno.test("backward launches whose buffers are too small are refused when built, naming the buffer", async () => {
  const a = await testArena();
  const small = f32(a, randomArray(10, 47));
  assert.throws(
    () =>
      crossEntropy(a, {
        logits: f32(a, randomArray(64, 48)),
        targets: u32(a, [1]),
        loss: small,
        rows: 2,
        vocab: 32,
      }),
    (e) => e instanceof ShapeError && /targets holds 1 u32 words/.test(e.message),
  );
  assert.throws(
    () =>
      embedBackward(a, {
        plan: u32(a, embedBackwardPlan([1, 2], 8)),
        dh: small,
        dE: f32(a, randomArray(64, 49)),
        rows: 3,
        dim: 4,
        vocab: 8,
      }),
    (e) => e instanceof ShapeError && /plan holds 8 u32 words/.test(e.message),
  );
  assert.throws(
    () =>
      rmsnormBackward(a, {
        x: small,
        weight: small,
        dy: small,
        dx: small,
        dWeight: small,
        rows: 2,
        dim: 8,
        eps: EPS,
      }),
    (e) => e instanceof ShapeError && /x holds 10 floats/.test(e.message),
  );
});
