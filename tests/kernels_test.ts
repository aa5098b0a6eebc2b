import assert from "node:assert/strict";
import { type Dispatch, run } from "../kernels/dispatch.ts";
import { embed } from "../kernels/embed.ts";
import { rmsnorm } from "../kernels/rmsnorm.ts";
import { gemv } from "../kernels/gemv.ts";
import { matmul } from "../kernels/matmul.ts";
import { ropeKv, type RopeScaling, ropeTable } from "../kernels/rope_kv.ts";
import { qkNorm } from "../kernels/qk_norm.ts";
import { attention, attentionSplits } from "../kernels/attention.ts";
import { add } from "../kernels/add.ts";
import { swiglu } from "../kernels/swiglu.ts";
import { gatherRows } from "../kernels/gather_rows.ts";
import { argmax } from "../kernels/argmax.ts";
import {
  addRef,
  argmaxRef,
  attentionRef,
  embedRef,
  gatherRowsRef,
  matmulRef,
  qkNormRef,
  rmsnormRef,
  ropeRef,
  silu,
  swigluRef,
} from "../kernels/reference.ts";
import { NO_TOKEN, S } from "../kernels/state.ts";
import { ShapeError } from "../gpu/errors.ts";
import {
  assertClose,
  f32,
  matrix,
  poisoned,
  randomArray,
  readF32,
  readU32,
  rng,
  stateTensor,
  testArena,
  u32,
} from "./helpers.ts";

const F32_TOL = 1e-5;
const F16_TOL = 1e-2;

for (const f16 of [false, true]) {
  const dt = f16 ? "f16" : "f32";
  for (const partRows of [undefined, 10]) {
    const split = partRows ? ", split into parts" : "";
    Deno.test(`embed() matches the CPU reference for ${dt} tables${split}, zero rows for NO_TOKEN`, async () => {
      const a = await testArena();
      const vocab = 37, dim = 264; // dim over one workgroup of 256
      const { m, values } = matrix(a, vocab, dim, { seed: 1, f16, partRows });
      const idList = [5, 0, 36, NO_TOKEN, 17];
      const ids = u32(a, [9, ...idList]);
      const out = poisoned(a, idList.length * dim);
      run(a.gpu, embed(a, { ids, idsOffset: 1, table: m, out, rows: 5 }), "t");
      const got = await readF32(a, out, idList.length * dim);
      assertClose(
        got,
        embedRef(values, dim, idList.map((i) => i === NO_TOKEN ? -1 : i)),
        1e-7,
        "embed",
      );
      assert.ok(got.subarray(3 * dim, 4 * dim).every((v) => v === 0));
    });
  }
}

Deno.test("rmsnorm() matches the CPU reference on rows of odd width", async () => {
  const a = await testArena();
  const rows = 3, dim = 328;
  const x = randomArray(rows * dim, 2, 3);
  const g = randomArray(dim, 3);
  const out = poisoned(a, rows * dim);
  run(a.gpu, rmsnorm(a, { x: f32(a, x), weight: f32(a, g), out, rows, dim, eps: 1e-5 }), "t");
  assertClose(await readF32(a, out, rows * dim), rmsnormRef(x, g, dim, 1e-5), F32_TOL, "rmsnorm");
});

for (const f16 of [false, true]) {
  const dt = f16 ? "f16" : "f32";
  const tol = f16 ? F16_TOL : F32_TOL;
  for (const rows of [1, 3, 8, 11]) {
    Deno.test(`gemv() matches the CPU reference for ${dt} weights, ${rows} rows`, async () => {
      const a = await testArena();
      const n = 77, k = 136; // neither a multiple of the workgroup size
      const { m, values } = matrix(a, n, k, { seed: 4 + rows, f16 });
      const x = randomArray(rows * k, 5);
      const y = poisoned(a, rows * n);
      run(a.gpu, gemv(a, { x: f32(a, x), w: m, y, rows }), "t");
      // The CPU reference uses the same f16-rounded weights, so the f16 bound is the f32 bound here.
      assertClose(await readF32(a, y, rows * n), matmulRef(x, values, k), tol, "gemv");
    });
  }

  Deno.test(`gemv() epilogues (bias, silu, broadcast residual, gated) match the reference, ${dt}`, async () => {
    const a = await testArena();
    const rows = 3, n = 48, k = 40;
    const x = randomArray(rows * k, 6);
    const xb = f32(a, x);
    const { m, values } = matrix(a, n, k, { seed: 7, f16 });
    const bias = randomArray(n, 8);
    const res = randomArray(rows * 16, 9);
    const y = poisoned(a, rows * n);
    run(
      a.gpu,
      gemv(a, {
        x: xb,
        w: m,
        y,
        rows,
        bias: f32(a, bias),
        silu: true,
        residual: f32(a, res),
        residualDim: 16,
      }),
      "t",
    );
    const lin = matmulRef(x, values, k);
    const ref = lin.map((v, i) =>
      silu(v + bias[i % n]) + res[Math.floor(i / n) * 16 + (i % n) % 16]
    );
    assertClose(await readF32(a, y, rows * n), ref, tol, "gemv bias+silu+residual");

    const gated = matrix(a, 2 * n, k, { seed: 10, f16, gated: true });
    const yg = poisoned(a, rows * n);
    run(a.gpu, gemv(a, { x: xb, w: gated.m, y: yg, rows }), "t");
    assertClose(
      await readF32(a, yg, rows * n),
      swigluRef(matmulRef(x, gated.values, k), n),
      tol,
      "gemv gated",
    );
  });

  Deno.test(`gemv() with a fused RMSNorm matches norm-then-product on the CPU, ${dt}`, async () => {
    const a = await testArena();
    const k = 48, n = 37;
    const g = randomArray(k, 40);
    const plain = matrix(a, n, k, { seed: 41, f16 });
    const gated = matrix(a, 2 * n, k, { seed: 42, f16, gated: true });
    for (const rows of [1, 3, 10]) {
      const x = randomArray(rows * k, 43 + rows, 4);
      const xb = f32(a, x);
      const xn = rmsnormRef(x, g, k, 1e-5);
      const norm = { weight: f32(a, g), eps: 1e-5 };
      const y = poisoned(a, rows * n);
      const yg = poisoned(a, rows * n);
      run(a.gpu, [
        ...gemv(a, { x: xb, w: plain.m, y, rows, norm }),
        ...gemv(a, { x: xb, w: gated.m, y: yg, rows, norm }),
      ], "t");
      assertClose(await readF32(a, y, rows * n), matmulRef(xn, plain.values, k), tol, "gemv norm");
      const gu = matmulRef(xn, gated.values, k);
      assertClose(await readF32(a, yg, rows * n), swigluRef(gu, n), tol, "gemv norm gated");
    }
  });

  Deno.test(`gemv() gives each row the same bits whatever the block size, ${dt}`, async () => {
    const a = await testArena();
    const n = 50, k = 64;
    const { m } = matrix(a, n, k, { seed: 11, f16 });
    const xb = f32(a, randomArray(8 * k, 12));
    const gated = matrix(a, 2 * n, k, { seed: 14, f16, gated: true }).m;
    for (const norm of [undefined, { weight: f32(a, randomArray(k, 13)), eps: 1e-5 }]) {
      for (const w of [m, gated]) {
        const y1 = poisoned(a, n);
        run(a.gpu, gemv(a, { x: xb, w, y: y1, rows: 1, norm }), "t");
        const one = await readF32(a, y1, n);
        for (const rows of [2, 3, 4, 5, 8]) { // two output rows per thread for 2..4 rows
          const y = poisoned(a, rows * n);
          run(a.gpu, gemv(a, { x: xb, w, y, rows, norm }), "t");
          assert.deepEqual((await readF32(a, y, rows * n)).subarray(0, n), one, `${rows} rows`);
        }
      }
    }
  });

  Deno.test(`gemv() and matmul() over a matrix split into parts give the bits of the whole, ${dt}`, async () => {
    const a = await testArena();
    const n = 50, k = 64;
    const x = f32(a, randomArray(20 * k, 15));
    const bias = f32(a, randomArray(n, 16));
    for (const gated of [false, true]) {
      const rows = gated ? 2 * n : n;
      const whole = matrix(a, rows, k, { seed: 17, f16, gated }).m;
      const parts = matrix(a, rows, k, { seed: 17, f16, gated, partRows: 12 }).m;
      assert.equal(parts.parts.length, 5);
      for (const [r, f] of [[3, gemv], [20, matmul]] as const) {
        const cols = gated && f === matmul ? 2 * n : n;
        const out = (w: typeof whole) => {
          const y = poisoned(a, r * cols);
          const o = { x, w, y, rows: r, bias: gated ? undefined : bias };
          run(a.gpu, f === gemv ? gemv(a, o) : matmul(a, o), "t");
          return readF32(a, y, r * cols);
        };
        assert.deepEqual(await out(parts), await out(whole), `${f.name}, gated ${gated}`);
      }
    }
  });

  Deno.test(`matmul() matches the CPU reference for ${dt} weights on odd shapes`, async () => {
    const a = await testArena();
    const rows = 70, n = 83, k = 152;
    const { m, values } = matrix(a, n, k, { seed: 13, f16 });
    const x = randomArray(rows * k, 14);
    const y = poisoned(a, rows * n);
    run(a.gpu, matmul(a, { x: f32(a, x), w: m, y, rows }), "t");
    assertClose(await readF32(a, y, rows * n), matmulRef(x, values, k), tol, "matmul");
  });

  for (const partRows of [undefined, 20]) {
    const split = partRows ? ", split into parts" : "";
    Deno.test(`matmul() with a bias matches the CPU reference for ${dt} weights on odd shapes${split}`, async () => {
      const a = await testArena();
      const rows = 70, n = 83, k = 152;
      const { m, values } = matrix(a, n, k, { seed: 50, f16, partRows });
      assert.equal(m.parts.length, partRows ? 5 : 1);
      const x = randomArray(rows * k, 51);
      const bias = randomArray(n, 52);
      const y = poisoned(a, rows * n);
      run(a.gpu, matmul(a, { x: f32(a, x), w: m, y, rows, bias: f32(a, bias) }), "t");
      const ref = matmulRef(x, values, k).map((v, i) => v + bias[i % n]);
      assertClose(await readF32(a, y, rows * n), ref, tol, "matmul + bias");
    });
  }

  Deno.test(`gemv() and matmul() read and write rows inside wider tensors (xRows, yRows), ${dt}`, async () => {
    const a = await testArena();
    const n = 37, k = 48;
    const xOff = 8, xStride = k + 12, yOff = 5, yStride = n + 7;
    const { m, values } = matrix(a, n, k, { seed: 53, f16, partRows: 16 });
    const bias = randomArray(n, 54);
    const g = randomArray(k, 55);
    for (const rows of [1, 3, 11]) {
      const wide = randomArray(xOff + rows * xStride, 56 + rows, 3);
      const x = Float32Array.from(
        { length: rows * k },
        (_, i) => wide[xOff + Math.floor(i / k) * xStride + (i % k)],
      );
      const launches: [string, (y: ReturnType<typeof poisoned>) => Dispatch[], Float64Array][] = [
        [
          "matmul",
          (y) =>
            matmul(a, {
              x: f32(a, wide),
              w: m,
              y,
              rows,
              bias: f32(a, bias),
              xRows: { offset: xOff, stride: xStride },
              yRows: { offset: yOff, stride: yStride },
            }),
          matmulRef(x, values, k).map((v, i) => v + bias[i % n]),
        ],
        [
          "gemv with a fused norm",
          (y) =>
            gemv(a, {
              x: f32(a, wide),
              w: m,
              y,
              rows,
              norm: { weight: f32(a, g), eps: 1e-5 },
              xRows: { offset: xOff, stride: xStride },
              yRows: { offset: yOff, stride: yStride },
            }),
          matmulRef(rmsnormRef(x, g, k, 1e-5), values, k),
        ],
      ];
      for (const [name, launch, ref] of launches) {
        const size = yOff + rows * yStride;
        const y = poisoned(a, size);
        run(a.gpu, launch(y), "t");
        const got = await readF32(a, y, size);
        const inRows = (i: number) => i >= yOff && (i - yOff) % yStride < n;
        const picked = Array.from(
          { length: rows * n },
          (_, i) => got[yOff + Math.floor(i / n) * yStride + (i % n)],
        );
        assertClose(picked, ref, tol, `${name}, ${rows} rows`);
        assert.ok(
          got.every((v, i) => inRows(i) || Number.isNaN(v)),
          `${name}, ${rows} rows: wrote outside its rows`,
        );
      }
    }
  });
}

Deno.test("a launch whose buffers are too small is refused when it is built, naming the buffer", async () => {
  const a = await testArena();
  const { m } = matrix(a, 4, 24, { seed: 1, f16: false });
  // 4 rows of x and y are needed; one row of x and two of y are given.
  const x = a.tensor("x", [1, 24]);
  const y = a.tensor("y", [2, 4]);
  assert.throws(() => gemv(a, { x, w: m, y, rows: 4, label: "layers.3.o_proj" }), (e: unknown) => {
    assert.ok(e instanceof ShapeError);
    assert.equal(e.message, "layers.3.o_proj: x holds 24 floats ([1,24]), needs 96");
    return true;
  });
  assert.throws(
    () => gemv(a, { x: a.tensor("x", [4, 24]), w: m, y, rows: 4, label: "lm_head" }),
    /lm_head: y holds 8 floats \(\[2,4\]\), needs 16/,
  );
});

// headDim 12, theta 10000: wavelengths 6.3, 29, 135, 628, 2920 and 13540, so this llama3 scaling
// keeps the first three, blends the fourth and divides the last two.
const LLAMA3_SMALL: RopeScaling = {
  type: "llama3",
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositions: 1000,
};
const ropeCases: [number, RopeScaling | null][] = [
  [1, null],
  [3, null],
  [3, { type: "linear", factor: 4 }],
  [3, LLAMA3_SMALL],
];
for (const [rows, scaling] of ropeCases) {
  const scaled = scaling ? `, ${scaling.type} scaling` : "";
  Deno.test(`ropeKv() rotates q in place and writes rotated k and v at each row's position (${rows} rows${scaled})`, async () => {
    const a = await testArena();
    const nHeads = 4, nKvHeads = 2, headDim = 12, capacity = 20;
    const positions = rows === 1 ? [6] : [6, 13, 2]; // rows need not be consecutive positions
    const stride = (nHeads + 2 * nKvHeads) * headDim;
    const qkv = randomArray(rows * stride, 15);
    const qkvB = f32(a, qkv);
    const kc = poisoned(a, capacity * nKvHeads * headDim);
    const vc = poisoned(a, capacity * nKvHeads * headDim);
    run(
      a.gpu,
      ropeKv(a, {
        positions: u32(a, positions),
        rope: f32(a, ropeTable(capacity, { headDim, ropeTheta: 10000, ropeScaling: scaling })),
        qkv: qkvB,
        kCache: kc,
        vCache: vc,
        rows,
        nHeads,
        nKvHeads,
        headDim,
        capacity,
      }),
      "t",
    );
    const q = await readF32(a, qkvB, rows * stride);
    const k = await readF32(a, kc, capacity * nKvHeads * headDim);
    const v = await readF32(a, vc, capacity * nKvHeads * headDim);
    const qRef: number[] = [], qGot: number[] = [], kRef: number[] = [], kGot: number[] = [];
    const vRef: number[] = [], vGot: number[] = [];
    for (let r = 0; r < rows; r++) {
      const pos = positions[r];
      for (let h = 0; h < nHeads + nKvHeads; h++) {
        const x = Array.from(
          qkv.subarray(r * stride + h * headDim, r * stride + (h + 1) * headDim),
        );
        ropeRef(x, pos, { theta: 10000, scaling });
        if (h < nHeads) {
          qRef.push(...x);
          qGot.push(...q.subarray(r * stride + h * headDim, r * stride + (h + 1) * headDim));
        } else {
          kRef.push(...x);
          const c = (pos * nKvHeads + h - nHeads) * headDim;
          kGot.push(...k.subarray(c, c + headDim));
        }
      }
      const vs = r * stride + (nHeads + nKvHeads) * headDim;
      vRef.push(...qkv.subarray(vs, vs + nKvHeads * headDim));
      const c = pos * nKvHeads * headDim;
      vGot.push(...v.subarray(c, c + nKvHeads * headDim));
    }
    assertClose(qGot, qRef, F32_TOL, "rope q");
    assertClose(kGot, kRef, F32_TOL, "rope k");
    assert.deepEqual(vGot, vRef.map(Math.fround));
    assert.ok(Number.isNaN(k[0]), "positions no row names are untouched");
  });
}

/**
 * transformers' inverse frequencies, transcribed: `_compute_default_rope_parameters`, then
 * `_compute_linear_scaling_rope_parameters` (inv_freq /= factor) or `_compute_llama3_parameters`
 * (the torch.where form). `band` says which llama3 branch each frequency took.
 */
function hfInvFreq(dim: number, base: number, scaling: RopeScaling) {
  const invFreq = Array.from({ length: dim / 2 }, (_, j) => 1.0 / base ** ((2 * j) / dim));
  if (scaling.type === "linear") {
    return { invFreq: invFreq.map((f) => f / scaling.factor), band: [] as string[] };
  }
  const factor = scaling.factor;
  const lowFreqFactor = scaling.lowFreqFactor;
  const highFreqFactor = scaling.highFreqFactor;
  const oldContextLen = scaling.originalMaxPositions;
  const lowFreqWavelen = oldContextLen / lowFreqFactor;
  const highFreqWavelen = oldContextLen / highFreqFactor;
  const wavelen = invFreq.map((f) => 2 * Math.PI / f);
  const invFreqLlama = invFreq.map((f, j) => wavelen[j] > lowFreqWavelen ? f / factor : f);
  const smoothFactor = wavelen.map((w) =>
    (oldContextLen / w - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
  );
  const smoothedInvFreq = invFreqLlama.map((f, j) =>
    (1 - smoothFactor[j]) * f / factor + smoothFactor[j] * f
  );
  const isMediumFreq = wavelen.map((w) => !(w < highFreqWavelen) && !(w > lowFreqWavelen));
  return {
    invFreq: invFreqLlama.map((f, j) => isMediumFreq[j] ? smoothedInvFreq[j] : f),
    band: wavelen.map((w, j) => isMediumFreq[j] ? "medium" : w > lowFreqWavelen ? "low" : "high"),
  };
}

const LLAMA31: RopeScaling = { // Llama 3.1 8B's config.json
  type: "llama3",
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositions: 8192,
};
for (const scaling of [{ type: "linear", factor: 4 } as RopeScaling, LLAMA31]) {
  Deno.test(`ropeTable() with ${scaling.type} scaling matches transformers' formula`, () => {
    const headDim = 128, theta = 500000, capacity = 9000;
    const table = ropeTable(capacity, { headDim, ropeTheta: theta, ropeScaling: scaling });
    const plain = ropeTable(capacity, { headDim, ropeTheta: theta });
    const { invFreq, band } = hfInvFreq(headDim, theta, scaling);
    const freqs = [0, 5, 20, 29, 31, 34, 40, 50, 63];
    if (scaling.type === "llama3") {
      // Llama 3.1 puts these frequencies in all three bands.
      assert.deepEqual(new Set(freqs.map((i) => band[i])), new Set(["high", "medium", "low"]));
    }
    let differs = 0;
    for (const p of [1, 17, 4099, 8999]) {
      for (const i of freqs) {
        const at = (p * headDim / 2 + i) * 2;
        const angle = p * invFreq[i];
        assert.ok(Math.abs(table[at] - Math.cos(angle)) < 1e-6, `cos, position ${p}, freq ${i}`);
        assert.ok(
          Math.abs(table[at + 1] - Math.sin(angle)) < 1e-6,
          `sin, position ${p}, freq ${i}`,
        );
        if (Math.abs(table[at] - plain[at]) > 1e-3) differs++;
      }
    }
    assert.ok(differs > 6, `scaling changed only ${differs} entries`);
  });
}

for (const headDim of [12, 76]) { // under and over one workgroup of 64
  Deno.test(`qkNorm() normalises each q and k head in place and leaves v alone (headDim ${headDim})`, async () => {
    const a = await testArena();
    const rows = 3, nHeads = 5, nKvHeads = 1;
    const stride = (nHeads + 2 * nKvHeads) * headDim;
    const qkv = randomArray(rows * stride, 60 + headDim, 3);
    const g = randomArray(2 * headDim, 61, 2);
    // A row past `rows`, NaN: the kernel must leave it alone.
    const buf = f32(a, Float32Array.from([...qkv, ...new Array(stride).fill(NaN)]));
    const o = { nHeads, nKvHeads, headDim, eps: 1e-5 };
    run(a.gpu, qkNorm(a, { ...o, rows, qkv: buf, weight: f32(a, g) }), "t");
    const got = await readF32(a, buf, (rows + 1) * stride);
    const ref = qkNormRef(qkv, {
      ...o,
      qWeight: g.subarray(0, headDim),
      kWeight: g.subarray(headDim),
    });
    const qk: number[] = [], qkRef: number[] = [];
    for (let r = 0; r < rows; r++) {
      const at = r * stride, v = at + (nHeads + nKvHeads) * headDim;
      qk.push(...got.subarray(at, v));
      qkRef.push(...ref.subarray(at, v));
      assert.deepEqual(got.subarray(v, at + stride), qkv.subarray(v, at + stride), `row ${r}: v`);
      for (let h = 0; h < nHeads + nKvHeads; h++) {
        let s = 0;
        for (let e = 0; e < headDim; e++) {
          s += (got[at + h * headDim + e] / g[(h < nHeads ? 0 : headDim) + e]) ** 2;
        }
        assert.ok(
          Math.abs(s / headDim - 1) < 1e-3,
          `row ${r}, head ${h}: rms ${Math.sqrt(s / headDim)}`,
        );
      }
    }
    assertClose(qk, qkRef, F32_TOL, "qk_norm");
    assert.ok(got.subarray(rows * stride).every(Number.isNaN), "the row past `rows` was written");
  });
}

Deno.test("qkNorm() gives each row the same bits whatever the block size", async () => {
  const a = await testArena();
  const nHeads = 4, nKvHeads = 2, headDim = 20;
  const stride = (nHeads + 2 * nKvHeads) * headDim;
  const qkv = randomArray(8 * stride, 62, 3);
  const weight = f32(a, randomArray(2 * headDim, 63, 2));
  const rowsOf = async (rows: number) => {
    const buf = f32(a, qkv.slice(0, rows * stride));
    run(a.gpu, qkNorm(a, { qkv: buf, weight, rows, nHeads, nKvHeads, headDim, eps: 1e-5 }), "t");
    return (await readF32(a, buf, rows * stride)).subarray(0, stride);
  };
  const one = await rowsOf(1);
  for (const rows of [2, 5, 8]) assert.deepEqual(await rowsOf(rows), one, `${rows} rows`);
});

/** Runs attention with `splits` chunks per row on random data and compares with the CPU. */
async function checkAttention(positions: number[], capacity: number, splits: number) {
  const a = await testArena();
  const rows = positions.length;
  const nHeads = 6, nKvHeads = 2, headDim = 72;
  const stride = (nHeads + 2 * nKvHeads) * headDim;
  const qkv = randomArray(rows * stride, 16 + positions[0]);
  const kc = randomArray(capacity * nKvHeads * headDim, 17, 2);
  const vc = randomArray(capacity * nKvHeads * headDim, 18);
  const out = poisoned(a, rows * nHeads * headDim);
  run(
    a.gpu,
    attention(a, {
      positions: u32(a, positions),
      qkv: f32(a, qkv),
      kCache: f32(a, kc),
      vCache: f32(a, vc),
      partial: poisoned(a, rows * nHeads * splits * (2 + headDim)),
      arrived: u32(a, new Uint32Array(rows * nHeads)),
      out,
      rows,
      nHeads,
      nKvHeads,
      headDim,
      capacity,
      splits,
    }),
    "t",
  );
  const q: number[] = [];
  for (let r = 0; r < rows; r++) q.push(...qkv.subarray(r * stride, r * stride + nHeads * headDim));
  const ref = attentionRef(q, kc, vc, { nHeads, nKvHeads, headDim, positions });
  assertClose(await readF32(a, out, rows * nHeads * headDim), ref, F32_TOL, `${splits} splits`);
}

const consecutive = (rows: number, pos0: number) =>
  Array.from({ length: rows }, (_, r) => pos0 + r);
const attentionCases: [number[], number][] = [
  [consecutive(1, 0), 140],
  [consecutive(1, 130), 140],
  [consecutive(5, 61), 140],
  [consecutive(4, 61), 300],
  [consecutive(8, 199), 208],
  [consecutive(2, 900), 1030],
  [consecutive(20, 40), 64], // a prefill-like block, one chunk per row
  [[70, 3, 41], 140], // rows at unrelated positions (tree verification, training batches)
];
for (const [positions, capacity] of attentionCases) {
  for (const splits of [1, attentionSplits(capacity)]) {
    Deno.test(`attention() matches the CPU reference: ${positions.length} queries at positions ${positions[0]}.., ${splits} splits, GQA`, () =>
      checkAttention(positions, capacity, splits));
  }
}

Deno.test("swiglu(), add() and gatherRows() match the CPU reference", async () => {
  const a = await testArena();
  const rows = 3, n = 300;
  const gu = randomArray(rows * 2 * n, 19, 3);
  const out = poisoned(a, rows * n);
  const x = randomArray(rows * n, 20), y = randomArray(rows * n, 21);
  const sum = poisoned(a, rows * n);
  const sel = poisoned(a, 2 * n);
  const xb = f32(a, x);
  run(a.gpu, [
    ...swiglu(a, { gu: f32(a, gu), out, rows, n }),
    ...add(a, { a: xb, b: f32(a, y), out: sum, n: rows * n }),
    // the index is word 5 of a u32 buffer, read on the GPU
    ...gatherRows(a, {
      x: xb,
      out: sel,
      index: { buffer: u32(a, [9, 9, 9, 9, 9, 2]).buffer, at: 5 },
      rows,
      dim: n,
      outRow: 1,
    }),
  ], "t");
  assertClose(await readF32(a, out, rows * n), swigluRef(gu, n), F32_TOL, "swiglu");
  assertClose(await readF32(a, sum, rows * n), addRef(x, y), F32_TOL, "add");
  const got = await readF32(a, sel, 2 * n);
  assert.deepEqual(Array.from(got.subarray(n)), Array.from(gatherRowsRef(x, n, 2)));
  assert.ok(got.subarray(0, n).every(Number.isNaN), "row 0 is not written");
});

for (const n of [1001, 9001]) {
  Deno.test(`argmax() over ${n} logits matches the CPU reference and breaks ties toward the lowest index`, async () => {
    const a = await testArena();
    const rows = 4;
    const r = rng(22 + n);
    const logits = Float32Array.from({ length: rows * n }, () => Math.round(r(0, 50)));
    logits[2 * n + n - 1] = 1000; // a unique max, last element
    logits[3 * n + 5] = logits[3 * n + n - 2] = 2000; // a tie far apart (other thread, other round)
    logits[1 * n + 700] = logits[1 * n + 699] = 3000; // a tie of neighbours
    const out = u32(a, new Array(rows + 2).fill(NO_TOKEN));
    run(a.gpu, argmax(a, { logits: f32(a, logits), out, rows, n, outOffset: 2 }), "t");
    const got = Array.from(await readU32(a, out, rows + 2));
    assert.deepEqual(got, [NO_TOKEN, NO_TOKEN, ...argmaxRef(logits, n)]);
    assert.deepEqual(got.slice(3), [699, n - 1, 5]);
  });
}

Deno.test("every math kernel returns at once when its done flag is set", async () => {
  const a = await testArena();
  const done = stateTensor(a, { [S.DONE]: 1 }).buffer;
  const x = f32(a, randomArray(64, 23));
  const { m } = matrix(a, 8, 8, { seed: 24, f16: false });
  // qk_norm works in place: NaN in gives NaN out, so it gets finite data that must stay as it is.
  const qkv = randomArray(64, 26);
  const outs: [
    string,
    ReturnType<typeof poisoned>,
    (out: ReturnType<typeof poisoned>) => Dispatch[],
    Float32Array?,
  ][] = [
    [
      "rmsnorm",
      poisoned(a, 8),
      (out) => rmsnorm(a, { x, weight: x, out, rows: 1, dim: 8, eps: 1e-5, done }),
    ],
    ["gemv", poisoned(a, 8), (out) => gemv(a, { x, w: m, y: out, rows: 1, done })],
    ["matmul", poisoned(a, 8), (out) => matmul(a, { x, w: m, y: out, rows: 1, done })],
    ["add", poisoned(a, 8), (out) => add(a, { a: x, b: x, out, n: 8, done })],
    ["swiglu", poisoned(a, 8), (out) => swiglu(a, { gu: x, out, rows: 1, n: 8, done })],
    [
      "embed",
      poisoned(a, 8),
      (out) => embed(a, { ids: u32(a, [1]), table: m, out, rows: 1, done }),
    ],
    [
      "gather_rows",
      poisoned(a, 8),
      (out) =>
        gatherRows(a, {
          x,
          out,
          index: { buffer: u32(a, [0]).buffer, at: 0 },
          rows: 1,
          dim: 8,
          outRow: 0,
          done,
        }),
    ],
    ["argmax", poisoned(a, 8), (out) => argmax(a, { logits: x, out, rows: 1, n: 8, done })],
    ["attention", poisoned(a, 8), (out) =>
      attention(a, {
        positions: u32(a, [0]),
        qkv: x,
        kCache: x,
        vCache: x,
        partial: poisoned(a, 64),
        arrived: u32(a, [0, 0]),
        out,
        rows: 1,
        nHeads: 2,
        nKvHeads: 1,
        headDim: 4,
        capacity: 4,
        done,
      })],
    ["rope_kv", poisoned(a, 16), (kCache) =>
      ropeKv(a, {
        positions: u32(a, [0]),
        rope: x,
        qkv: f32(a, randomArray(64, 25)),
        kCache,
        vCache: kCache,
        rows: 1,
        nHeads: 2,
        nKvHeads: 1,
        headDim: 4,
        capacity: 4,
        done,
      })],
    [
      "qk_norm",
      f32(a, qkv),
      (out) =>
        qkNorm(a, {
          qkv: out,
          weight: x,
          rows: 2,
          nHeads: 2,
          nKvHeads: 1,
          headDim: 8,
          eps: 1e-5,
          done,
        }),
      qkv,
    ],
  ];
  for (const [name, out, launch, before] of outs) {
    run(a.gpu, launch(out), "t");
    if (before) {
      assert.deepEqual(await readF32(a, out, before.length), before, `${name} wrote while done`);
      continue;
    }
    const got = await readF32(a, out, 8);
    assert.ok(got.every(Number.isNaN), `${name} wrote output while done`);
  }
});
