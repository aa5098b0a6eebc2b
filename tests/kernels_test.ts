import assert from "node:assert/strict";
import { run } from "../kernels/dispatch.ts";
import { embed } from "../kernels/embed.ts";
import { rmsnorm } from "../kernels/rmsnorm.ts";
import { gemv } from "../kernels/gemv.ts";
import { matmul } from "../kernels/matmul.ts";
import { ropeKv, ropeTable } from "../kernels/rope_kv.ts";
import { attention, attentionSplits } from "../kernels/attention.ts";
import { add, selectRow, swiglu } from "../kernels/elementwise.ts";
import { argmax } from "../kernels/decode_ops.ts";
import {
  addRef,
  argmaxRef,
  attentionRef,
  embedRef,
  matmulRef,
  relativeError,
  rmsnormRef,
  ropeRef,
  silu,
  swigluRef,
} from "../kernels/reference.ts";
import { NO_TOKEN, S } from "../decode/state.ts";
import {
  matrix,
  poisoned,
  randomArray,
  readF32,
  readU32,
  rng,
  stateBuffer,
  testGpu,
} from "./helpers.ts";

const F32_TOL = 1e-5;
const F16_TOL = 1e-2;

function assertClose(gpu: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string) {
  for (let i = 0; i < gpu.length; i++) {
    assert.ok(Number.isFinite(gpu[i]), `${what}: element ${i} is ${gpu[i]} (not written?)`);
  }
  const err = relativeError(gpu, ref);
  assert.ok(err < tol, `${what}: relative error ${err} >= ${tol}`);
}

for (const f16 of [false, true]) {
  const dt = f16 ? "f16" : "f32";
  Deno.test(`embed() matches the CPU reference for ${dt} tables, zero rows for NO_TOKEN`, async () => {
    const gpu = await testGpu();
    const vocab = 37, dim = 264; // dim over one workgroup of 256
    const { m, values } = matrix(gpu, vocab, dim, 1, f16);
    const idList = [5, 0, 36, NO_TOKEN, 17];
    const ids = gpu.storage("ids", Uint32Array.from([9, ...idList]));
    const out = poisoned(gpu, idList.length * dim);
    run(
      gpu,
      [embed(gpu, { state: stateBuffer(gpu), ids, idsOffset: 1, table: m, out, rows: 5 })],
      "t",
    );
    const got = await readF32(gpu, out, idList.length * dim);
    assertClose(
      got,
      embedRef(values, dim, idList.map((i) => i === NO_TOKEN ? -1 : i)),
      1e-7,
      "embed",
    );
    assert.ok(got.subarray(3 * dim, 4 * dim).every((v) => v === 0));
  });
}

Deno.test("rmsnorm() matches the CPU reference on rows of odd width", async () => {
  const gpu = await testGpu();
  const rows = 3, dim = 328;
  const x = randomArray(rows * dim, 2, 3);
  const g = randomArray(dim, 3);
  const out = poisoned(gpu, rows * dim);
  run(gpu, [
    rmsnorm(gpu, {
      state: stateBuffer(gpu),
      x: gpu.storage("x", x),
      weight: gpu.storage("g", g),
      out,
      rows,
      dim,
      eps: 1e-5,
    }),
  ], "t");
  assertClose(await readF32(gpu, out, rows * dim), rmsnormRef(x, g, dim, 1e-5), F32_TOL, "rmsnorm");
});

for (const f16 of [false, true]) {
  const dt = f16 ? "f16" : "f32";
  const tol = f16 ? F16_TOL : F32_TOL;
  for (const rows of [1, 3, 8, 11]) {
    Deno.test(`gemv() matches the CPU reference for ${dt} weights, ${rows} rows`, async () => {
      const gpu = await testGpu();
      const n = 77, k = 136; // neither a multiple of the workgroup size
      const { m, values } = matrix(gpu, n, k, 4 + rows, f16);
      const x = randomArray(rows * k, 5);
      const y = poisoned(gpu, rows * n);
      run(
        gpu,
        [gemv(gpu, { state: stateBuffer(gpu), x: gpu.storage("x", x), w: m, y, rows })],
        "t",
      );
      // The CPU reference uses the same f16-rounded weights, so the f16 bound is the f32 bound here.
      assertClose(await readF32(gpu, y, rows * n), matmulRef(x, values, k), tol, "gemv");
    });
  }

  Deno.test(`gemv() epilogues (bias, silu, broadcast residual, gated) match the reference, ${dt}`, async () => {
    const gpu = await testGpu();
    const rows = 3, n = 48, k = 40;
    const state = stateBuffer(gpu);
    const x = randomArray(rows * k, 6);
    const xb = gpu.storage("x", x);
    const { m, values } = matrix(gpu, n, k, 7, f16);
    const bias = randomArray(n, 8);
    const res = randomArray(rows * 16, 9);
    const y = poisoned(gpu, rows * n);
    run(gpu, [
      gemv(gpu, {
        state,
        x: xb,
        w: m,
        y,
        rows,
        bias: gpu.storage("b", bias),
        silu: true,
        residual: gpu.storage("r", res),
        residualDim: 16,
      }),
    ], "t");
    const lin = matmulRef(x, values, k);
    const ref = lin.map((v, i) =>
      silu(v + bias[i % n]) + res[Math.floor(i / n) * 16 + (i % n) % 16]
    );
    assertClose(await readF32(gpu, y, rows * n), ref, tol, "gemv bias+silu+residual");

    const gated = matrix(gpu, 2 * n, k, 10, f16);
    const yg = poisoned(gpu, rows * n);
    run(gpu, [gemv(gpu, { state, x: xb, w: gated.m, y: yg, rows, gated: true })], "t");
    assertClose(
      await readF32(gpu, yg, rows * n),
      swigluRef(
        (() => {
          const g = matmulRef(x, gated.values, k);
          const gu = new Float64Array(rows * 2 * n);
          for (let r = 0; r < rows; r++) gu.set(g.subarray(r * 2 * n, (r + 1) * 2 * n), r * 2 * n);
          return gu;
        })(),
        n,
      ),
      tol,
      "gemv gated",
    );
  });

  Deno.test(`gemv() with a fused RMSNorm matches norm-then-product on the CPU, ${dt}`, async () => {
    const gpu = await testGpu();
    const k = 48, n = 37;
    const state = stateBuffer(gpu);
    const g = randomArray(k, 40);
    const plain = matrix(gpu, n, k, 41, f16);
    const gated = matrix(gpu, 2 * n, k, 42, f16);
    for (const rows of [1, 3, 10]) {
      const x = randomArray(rows * k, 43 + rows, 4);
      const xb = gpu.storage("x", x);
      const xn = rmsnormRef(x, g, k, 1e-5);
      const norm = { weight: gpu.storage("g", g), eps: 1e-5 };
      const y = poisoned(gpu, rows * n);
      const yg = poisoned(gpu, rows * n);
      run(gpu, [
        gemv(gpu, { state, x: xb, w: plain.m, y, rows, norm }),
        gemv(gpu, { state, x: xb, w: gated.m, y: yg, rows, norm, gated: true }),
      ], "t");
      assertClose(
        await readF32(gpu, y, rows * n),
        matmulRef(xn, plain.values, k),
        tol,
        "gemv norm",
      );
      const gu = matmulRef(xn, gated.values, k);
      assertClose(await readF32(gpu, yg, rows * n), swigluRef(gu, n), tol, "gemv norm gated");
    }
  });

  Deno.test(`gemv() gives each row the same bits whatever the block size, ${dt}`, async () => {
    const gpu = await testGpu();
    const n = 50, k = 64;
    const state = stateBuffer(gpu);
    const { m } = matrix(gpu, n, k, 11, f16);
    const x = randomArray(8 * k, 12);
    const xb = gpu.storage("x", x);
    const gated = matrix(gpu, 2 * n, k, 14, f16).m;
    for (const norm of [undefined, { weight: gpu.storage("g", randomArray(k, 13)), eps: 1e-5 }]) {
      for (const isGated of [false, true]) {
        const w = isGated ? gated : m;
        const y1 = poisoned(gpu, n);
        run(gpu, [gemv(gpu, { state, x: xb, w, y: y1, rows: 1, norm, gated: isGated })], "t");
        const one = await readF32(gpu, y1, n);
        for (const rows of [2, 3, 4, 5, 8]) { // two output rows per thread for 2..4 rows
          const y = poisoned(gpu, rows * n);
          run(gpu, [gemv(gpu, { state, x: xb, w, y, rows, norm, gated: isGated })], "t");
          assert.deepEqual((await readF32(gpu, y, rows * n)).subarray(0, n), one, `${rows} rows`);
        }
      }
    }
  });

  Deno.test(`matmul() matches the CPU reference for ${dt} weights on odd shapes`, async () => {
    const gpu = await testGpu();
    const rows = 70, n = 83, k = 152;
    const { m, values } = matrix(gpu, n, k, 13, f16);
    const x = randomArray(rows * k, 14);
    const y = poisoned(gpu, rows * n);
    run(
      gpu,
      [matmul(gpu, { state: stateBuffer(gpu), x: gpu.storage("x", x), w: m, y, rows })],
      "t",
    );
    assertClose(await readF32(gpu, y, rows * n), matmulRef(x, values, k), tol, "matmul");
  });
}

Deno.test("ropeKv() rotates q in place and writes rotated k and v at state.pos + row", async () => {
  const gpu = await testGpu();
  const nHeads = 4, nKvHeads = 2, headDim = 12, capacity = 20, rows = 3, pos0 = 6;
  const stride = (nHeads + 2 * nKvHeads) * headDim;
  const qkv = randomArray(rows * stride, 15);
  const qkvB = gpu.storage("qkv", qkv);
  const kc = poisoned(gpu, capacity * nKvHeads * headDim);
  const vc = poisoned(gpu, capacity * nKvHeads * headDim);
  run(gpu, [
    ropeKv(gpu, {
      state: stateBuffer(gpu, { [S.POS]: pos0 }),
      rope: gpu.storage("rope", ropeTable(capacity, headDim, 10000)),
      qkv: qkvB,
      kCache: kc,
      vCache: vc,
      rows,
      nHeads,
      nKvHeads,
      headDim,
      capacity,
    }),
  ], "t");
  const q = await readF32(gpu, qkvB, rows * stride);
  const k = await readF32(gpu, kc, capacity * nKvHeads * headDim);
  const v = await readF32(gpu, vc, capacity * nKvHeads * headDim);
  const qRef: number[] = [], qGot: number[] = [], kRef: number[] = [], kGot: number[] = [];
  const vRef: number[] = [], vGot: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < nHeads + nKvHeads; h++) {
      const a = Array.from(qkv.subarray(r * stride + h * headDim, r * stride + (h + 1) * headDim));
      ropeRef(a, pos0 + r, 10000);
      if (h < nHeads) {
        qRef.push(...a);
        qGot.push(...q.subarray(r * stride + h * headDim, r * stride + (h + 1) * headDim));
      } else {
        kRef.push(...a);
        const c = ((pos0 + r) * nKvHeads + h - nHeads) * headDim;
        kGot.push(...k.subarray(c, c + headDim));
      }
    }
    const vs = r * stride + (nHeads + nKvHeads) * headDim;
    vRef.push(...qkv.subarray(vs, vs + nKvHeads * headDim));
    const c = (pos0 + r) * nKvHeads * headDim;
    vGot.push(...v.subarray(c, c + nKvHeads * headDim));
  }
  assertClose(qGot, qRef, F32_TOL, "rope q");
  assertClose(kGot, kRef, F32_TOL, "rope k");
  assert.deepEqual(vGot, vRef.map(Math.fround));
  assert.ok(Number.isNaN(k[0]), "positions before state.pos are untouched");
});

/** Runs attention with `splits` chunks per row on random data and compares with the CPU. */
async function checkAttention(rows: number, pos0: number, capacity: number, splits: number) {
  const gpu = await testGpu();
  const nHeads = 6, nKvHeads = 2, headDim = 72;
  const stride = (nHeads + 2 * nKvHeads) * headDim;
  const qkv = randomArray(rows * stride, 16 + pos0);
  const kc = randomArray(capacity * nKvHeads * headDim, 17, 2);
  const vc = randomArray(capacity * nKvHeads * headDim, 18);
  const out = poisoned(gpu, rows * nHeads * headDim);
  const o = {
    state: stateBuffer(gpu, { [S.POS]: pos0 }),
    qkv: gpu.storage("qkv", qkv),
    kCache: gpu.storage("k", kc),
    vCache: gpu.storage("v", vc),
    out,
    rows,
    nHeads,
    nKvHeads,
    headDim,
    capacity,
  };
  const partial = poisoned(gpu, rows * nHeads * splits * (2 + headDim));
  run(gpu, attention(gpu, { ...o, partial, splits }), "t");
  const q: number[] = [];
  for (let r = 0; r < rows; r++) q.push(...qkv.subarray(r * stride, r * stride + nHeads * headDim));
  const len = pos0 + rows;
  const ref = attentionRef(q, kc.subarray(0, len * nKvHeads * headDim), vc, {
    nHeads,
    nKvHeads,
    headDim,
    pos0,
  });
  assertClose(await readF32(gpu, out, rows * nHeads * headDim), ref, F32_TOL, `${splits} splits`);
}

const attentionCases: [number, number, number][] = [
  [1, 0, 140],
  [1, 130, 140],
  [5, 61, 140],
  [4, 61, 300],
  [8, 199, 208],
  [2, 900, 1030],
  [20, 40, 64], // a prefill-like block, one chunk per row
];
for (const [rows, pos0, capacity] of attentionCases) {
  for (const splits of [1, attentionSplits(capacity)]) {
    Deno.test(`attention() matches the CPU reference: ${rows} queries at position ${pos0}, ${splits} splits, GQA`, () =>
      checkAttention(rows, pos0, capacity, splits));
  }
}

Deno.test("swiglu(), add() and selectRow() match the CPU reference", async () => {
  const gpu = await testGpu();
  const rows = 3, n = 300;
  const state = stateBuffer(gpu, { [S.HEAD_ROW]: 2 });
  const gu = randomArray(rows * 2 * n, 19, 3);
  const out = poisoned(gpu, rows * n);
  const a = randomArray(rows * n, 20), b = randomArray(rows * n, 21);
  const sum = poisoned(gpu, rows * n);
  const sel = poisoned(gpu, 2 * n);
  const ab = gpu.storage("a", a);
  run(gpu, [
    swiglu(gpu, { state, gu: gpu.storage("gu", gu), out, rows, n }),
    add(gpu, { state, a: ab, b: gpu.storage("b", b), out: sum, n: rows * n }),
    selectRow(gpu, { state, x: ab, out: sel, dim: n, outRow: 1 }),
  ], "t");
  assertClose(await readF32(gpu, out, rows * n), swigluRef(gu, n), F32_TOL, "swiglu");
  assertClose(await readF32(gpu, sum, rows * n), addRef(a, b), F32_TOL, "add");
  assert.deepEqual(
    Array.from(await readF32(gpu, sel, 2 * n)).slice(n),
    Array.from(a.subarray(2 * n)),
  );
});

for (const n of [1001, 9001]) {
  Deno.test(`argmax() over ${n} logits matches the CPU reference and breaks ties toward the lowest index`, async () => {
    const gpu = await testGpu();
    const rows = 4;
    const r = rng(22 + n);
    const logits = Float32Array.from({ length: rows * n }, () => Math.round(r(0, 50)));
    logits[2 * n + n - 1] = 1000; // a unique max, last element
    logits[3 * n + 5] = logits[3 * n + n - 2] = 2000; // a tie far apart (other thread, other round)
    logits[1 * n + 700] = logits[1 * n + 699] = 3000; // a tie of neighbours
    const out = gpu.storage("out", new Uint32Array(rows + 2).fill(NO_TOKEN));
    run(gpu, [
      argmax(gpu, {
        state: stateBuffer(gpu),
        logits: gpu.storage("l", logits),
        out,
        rows,
        n,
        outOffset: 2,
      }),
    ], "t");
    const got = Array.from(await readU32(gpu, out, rows + 2));
    assert.deepEqual(got, [NO_TOKEN, NO_TOKEN, ...argmaxRef(logits, n)]);
    assert.deepEqual(got.slice(3), [699, n - 1, 5]);
  });
}

Deno.test("every kernel returns at once when state.done is set", async () => {
  const gpu = await testGpu();
  const out = poisoned(gpu, 8);
  run(gpu, [
    rmsnorm(gpu, {
      state: stateBuffer(gpu, { [S.DONE]: 1 }),
      x: gpu.storage("x", randomArray(8, 23)),
      weight: gpu.storage("g", randomArray(8, 24)),
      out,
      rows: 1,
      dim: 8,
      eps: 1e-5,
    }),
  ], "t");
  assert.ok((await readF32(gpu, out, 8)).every(Number.isNaN));
});
