import assert from "node:assert/strict";
import { run } from "../kernels/dispatch.ts";
import { adamw, type AdamWConfig, OPT, readOptimizerStatus } from "../kernels/adamw.ts";
import { gradNorm, gradNormPartials } from "../kernels/grad_norm.ts";
import { type AdamWParamRef, adamwRef, gradNormRef, lrAt } from "../kernels/reference_train.ts";
import { relativeError } from "../kernels/reference.ts";
import { ConfigError, ShapeError } from "../gpu/errors.ts";
import type { Arena, Tensor } from "../gpu/arena.ts";
import { f32, poisoned, randomArray, readF32, readU32, testArena, u32 } from "./helpers.ts";

const TOL = 1e-6;

function assertRel(got: number, want: number, what: string, tol = TOL) {
  const err = Math.abs(got - want) / Math.abs(want);
  assert.ok(err < tol, `${what}: ${got} vs ${want}, relative error ${err}`);
}

Deno.test("lrAt() warms up linearly, then follows the cosine to minLr", () => {
  const s = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
  assertRel(lrAt(0, s), 1e-4, "first warmup step");
  assertRel(lrAt(4, s), 5e-4, "mid warmup");
  assertRel(lrAt(9, s), 1e-3, "last warmup step");
  assertRel(lrAt(10, s), 1e-3, "start of the decay");
  assertRel(lrAt(60, s), 5.5e-4, "half way: the mean of maxLr and minLr");
  assertRel(lrAt(35, s), 1e-4 + 9e-4 * (1 + Math.SQRT1_2) / 2, "a quarter of the way");
  assertRel(lrAt(110, s), 1e-4, "end");
  assertRel(lrAt(5000, s), 1e-4, "after the end");
  assertRel(lrAt(0, { ...s, warmupSteps: 0 }), 1e-3, "no warmup");
});

/** Uploads `data` into an existing tensor. */
function upload(a: Arena, t: Tensor, data: Float32Array) {
  a.write(t.buffer, data);
}

Deno.test("gradNorm() matches the f64 norm over tensors of many sizes, with the same bits each run", async () => {
  const a = await testArena();
  const sizes = [1, 255, 256, 257, 8193, 100_000];
  const data = sizes.map((n, i) => randomArray(n, 30 + i, 0.5));
  const grads = data.map((d) => f32(a, d));
  const partial = poisoned(a, gradNormPartials(grads));
  const norm = poisoned(a, 1);
  const step = gradNorm(a, { grads, partial, norm });
  const norms = [];
  for (let i = 0; i < 2; i++) {
    run(a.gpu, step, "t");
    norms.push((await readF32(a, norm, 1))[0]);
  }
  assertRel(norms[0], gradNormRef(data), "norm");
  assert.equal(norms[0], norms[1]);
  for (const bad of [NaN, Infinity]) {
    const d = Float32Array.from(data[4]);
    d[4000] = bad;
    upload(a, grads[4], d);
    run(a.gpu, step, "t");
    const got = (await readF32(a, norm, 1))[0];
    assert.ok(Number.isNaN(bad) ? Number.isNaN(got) : got === Infinity, `${bad} gives ${got}`);
  }
});

/** Three tensors: a matrix and a long vector with weight decay, a short one without. */
const SHAPES = [{ n: 37 * 29, decay: true }, { n: 29, decay: false }, { n: 20_000, decay: true }];

function setup(a: Arena, config: AdamWConfig) {
  const w0 = SHAPES.map((s, i) => randomArray(s.n, 40 + i));
  const params = SHAPES.map((s, i) => ({
    weight: f32(a, w0[i]),
    grad: poisoned(a, s.n),
    m: f32(a, new Float32Array(s.n)),
    v: f32(a, new Float32Array(s.n)),
    decay: s.decay,
  }));
  const state = a.tensor("opt state", [OPT.WORDS], "u32");
  const step = adamw(a, {
    params,
    state,
    partial: poisoned(a, gradNormPartials(params.map((p) => p.grad))),
    norm: poisoned(a, 1),
    config,
  });
  const refs: AdamWParamRef[] = SHAPES.map((s, i) => ({
    w: Float64Array.from(w0[i]),
    m: new Float64Array(s.n),
    v: new Float64Array(s.n),
    decay: s.decay,
  }));
  return { params, state, step, refs, w0 };
}

Deno.test("adamw() follows PyTorch's AdamW over warmup, cosine and constant phases, with clipping on and off and non-finite steps skipped", async () => {
  const a = await testArena();
  const config: AdamWConfig = {
    schedule: { maxLr: 0.05, minLr: 0.005, warmupSteps: 3, totalSteps: 9 },
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weightDecay: 0.1,
    maxNorm: 1,
  };
  const { params, state, step, refs, w0 } = setup(a, config);
  const counters = { step: 0, skipped: 0 };
  // The gradients' norm is about 84 times their scale: clipping acts from a scale of 0.012 up.
  const scales = [0.1, 0.001, 0.05, NaN, 0.002, 0.1, Infinity, 0.001, 0.1, 0.003, 0.001, 0.05];
  const clips = [];
  for (const [k, scale] of scales.entries()) {
    const grads = SHAPES.map((s, i) => {
      const g = randomArray(s.n, 100 * k + i, Number.isFinite(scale) ? scale : 0.01);
      if (!Number.isFinite(scale) && i === 2) g[1234] = scale;
      return g;
    });
    grads.forEach((g, i) => upload(a, params[i].grad, g));
    run(a.gpu, step, "t");
    const want = adamwRef(refs, grads, counters, config);
    const got = await readOptimizerStatus(a, state);
    const what = `step ${k} (scale ${scale})`;
    assert.equal(got.step, counters.step, `${what}: step count`);
    assert.equal(got.applied, want.applied, `${what}: applied`);
    assert.equal(got.skipped, counters.skipped, `${what}: skipped`);
    assert.equal(got.firstSkipped, counters.skipped > 0 ? 3 : null, `${what}: first skipped`);
    if (want.applied) {
      assertRel(got.gradNorm, want.norm, `${what}: norm`);
      assertRel(got.lr, want.lr, `${what}: lr`);
      assertRel(got.clip, want.clip, `${what}: clip`);
      clips.push(want.clip);
    } else {
      assert.ok(!Number.isFinite(got.gradNorm), `${what}: norm ${got.gradNorm}`);
    }
    for (const [i, p] of params.entries()) {
      const n = SHAPES[i].n;
      const [w, m, v] = await Promise.all([p.weight, p.m, p.v].map((t) => readF32(a, t, n)));
      const r = refs[i];
      assert.ok(relativeError(w, r.w) < TOL, `${what}, tensor ${i}: weights`);
      assert.ok(relativeError(m, r.m) < TOL, `${what}, tensor ${i}: m`);
      assert.ok(relativeError(v, r.v) < TOL, `${what}, tensor ${i}: v`);
      // The updates themselves, not only the weights they are added to.
      const dw = w.map((x, e) => x - w0[i][e]);
      const dRef = r.w.map((x, e) => x - w0[i][e]);
      assert.ok(relativeError(dw, dRef) < 1e-5, `${what}, tensor ${i}: weight change`);
    }
  }
  assert.equal(counters.step, 10);
  assert.ok(clips.some((c) => c < 0.5) && clips.some((c) => c === 1), `clip factors ${clips}`);
});

Deno.test("adamw() computes the schedule and bias corrections on the GPU at any step count", async () => {
  const a = await testArena();
  const schedule = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
  const config = { schedule, beta1: 0.9, beta2: 0.999 };
  const { params, state, step } = setup(a, config);
  params.forEach((p, i) => upload(a, p.grad, randomArray(SHAPES[i].n, 50 + i, 1e-3)));
  for (const i of [0, 1, 4, 9, 10, 11, 35, 60, 108, 109, 110, 5000, 1_000_000]) {
    a.write(state.buffer, Uint32Array.of(i)); // resume at step i
    run(a.gpu, step, "t");
    const words = await readU32(a, state, OPT.WORDS);
    const f = new Float32Array(words.buffer);
    assert.equal(words[OPT.STEP], i + 1);
    assertRel(f[OPT.LR], lrAt(i, schedule), `lr at step ${i}`);
    assertRel(f[OPT.BIAS1], 1 - 0.9 ** (i + 1), `1 - beta1^t at step ${i}`);
    assertRel(f[OPT.BIAS2_SQRT], Math.sqrt(1 - 0.999 ** (i + 1)), `sqrt(1 - beta2^t) at step ${i}`);
  }
});

Deno.test("adamw() changes nothing when done", async () => {
  const a = await testArena();
  const config = { schedule: { maxLr: 0.1, minLr: 0, warmupSteps: 0, totalSteps: 10 } };
  const params = [{
    weight: f32(a, randomArray(64, 60)),
    grad: f32(a, randomArray(64, 61)),
    m: poisoned(a, 64),
    v: poisoned(a, 64),
    decay: true,
  }];
  const state = a.tensor("opt state", [OPT.WORDS], "u32");
  const norm = poisoned(a, 1);
  run(
    a.gpu,
    adamw(a, {
      params,
      state,
      partial: poisoned(a, 1),
      norm,
      config,
      done: u32(a, [1]).buffer,
    }),
    "t",
  );
  assert.deepEqual(await readF32(a, params[0].weight, 64), randomArray(64, 60));
  assert.ok((await readF32(a, params[0].m, 64)).every(Number.isNaN));
  assert.ok(Number.isNaN((await readF32(a, norm, 1))[0]));
  assert.ok((await readU32(a, state, OPT.WORDS)).every((w) => w === 0));
});

Deno.test("adamw() refuses bad hyperparameters and mismatched tensors", async () => {
  const a = await testArena();
  const t = (n: number) => poisoned(a, n);
  const schedule = { maxLr: 0.1, minLr: 0, warmupSteps: 5, totalSteps: 10 };
  const base = {
    params: [{ weight: t(8), grad: t(8), m: t(8), v: t(8), decay: true }],
    state: a.tensor("opt state", [OPT.WORDS], "u32"),
    partial: t(1),
    norm: t(1),
  };
  for (
    const config of [
      { schedule, beta2: 1 },
      { schedule, eps: 0 },
      { schedule, maxNorm: -1 },
      { schedule: { ...schedule, totalSteps: 4 } },
      { schedule: { ...schedule, warmupSteps: 2.5 } },
    ]
  ) {
    assert.throws(() => adamw(a, { ...base, config }), ConfigError, JSON.stringify(config));
  }
  const params = [{ ...base.params[0], v: t(7) }];
  assert.throws(() => adamw(a, { ...base, params, config: { schedule } }), ShapeError);
  assert.throws(
    () => adamw(a, { ...base, state: t(8), config: { schedule } }),
    /state holds 8 floats/,
  );
});
