// The KV cache path of decode and verify blocks: the qkv product with its fused RoPE + cache-write
// epilogue (gemv's `rope`), ropeKv() and attention() over f32 and f16 caches, against the CPU.
import assert from "node:assert/strict";
import { run } from "../kernels/dispatch.ts";
import { gemv } from "../kernels/gemv.ts";
import { ropeKv, ropeTable } from "../kernels/rope_kv.ts";
import { attention, attentionSplits } from "../kernels/attention.ts";
import { attentionRef, matmulRef, rmsnormRef, ropeRef } from "../kernels/reference.ts";
import type { Matrix } from "../kernels/dispatch.ts";
import type { Arena, Tensor } from "../gpu/arena.ts";
import {
  assertClose,
  f32,
  matrix,
  poisoned,
  qmatrix,
  randomArray,
  readF32,
  readU32,
  testArena,
  u32,
} from "./helpers.ts";

const F32_TOL = 1e-5;
// An f16 cache rounds each key and value once (relative error <= 2^-11); the GPU rounds its f32
// result, the reference its f64 one, so an element may land one f16 step apart.
const F16_CACHE_TOL = 1e-3;
const THETA = 10000;

type KvDtype = "f32" | "f16";

/** A cache tensor filled with NaN (f32) or f16 NaN pairs, so unwritten entries show. */
function poisonedCache(a: Arena, n: number, dtype: KvDtype): Tensor {
  if (dtype === "f32") return poisoned(a, n);
  return u32(a, new Uint32Array(n / 2).fill(0x7e007e00));
}

/** The cache's values as numbers (f16 pairs decoded). */
async function readCache(a: Arena, t: Tensor, n: number, dtype: KvDtype): Promise<Float32Array> {
  if (dtype === "f32") return readF32(a, t, n);
  const words = await readU32(a, t, n / 2);
  return Float32Array.from(new Float16Array(words.buffer, words.byteOffset, n));
}

const roundAs = (dtype: KvDtype, v: number[]) =>
  dtype === "f16" ? Array.from(Float16Array.from(v)) : v;

const shape = { nHeads: 4, nKvHeads: 2, headDim: 16 };
const heads = shape.nHeads + 2 * shape.nKvHeads;
const N = heads * shape.headDim;

/**
 * The reference of the fused qkv launch: qkv = RMSNorm(x) g W^T + b per row, RoPE on q and k at
 * the row's position; returns the rotated q rows and each row's rotated k and its v.
 */
function qkvRef(
  x: Float32Array,
  g: Float32Array,
  w: Float32Array,
  b: Float32Array,
  k: number,
  positions: number[],
) {
  const y = matmulRef(rmsnormRef(x, g, k, 1e-5), w, k);
  const hd = shape.headDim;
  return positions.map((pos, r) => {
    const row = Array.from(y.subarray(r * N, (r + 1) * N), (v, i) => v + b[i]);
    const head = (h: number) => row.slice(h * hd, (h + 1) * hd);
    const rotated = (h: number) => {
      const v = head(h);
      ropeRef(v, pos, { theta: THETA, scaling: null });
      return v;
    };
    const q = [...Array(shape.nHeads).keys()].flatMap(rotated);
    const kk = [...Array(shape.nKvHeads).keys()].flatMap((h) => rotated(shape.nHeads + h));
    const v = [...Array(shape.nKvHeads).keys()].flatMap((h) =>
      head(shape.nHeads + shape.nKvHeads + h)
    );
    return { q, k: kk, v };
  });
}

const weightKinds = ["f32", "f16", "q8", "q4"] as const;
for (const wt of weightKinds) {
  for (const kvDtype of ["f32", "f16"] as const) {
    Deno.test(`gemv() with the RoPE epilogue matches norm, product, bias, RoPE and cache writes on the CPU: ${wt} weights, ${kvDtype} cache`, async () => {
      const a = await testArena();
      const k = 64, capacity = 40;
      const hd = shape.headDim;
      // Parts split on heads (three heads, then three, then two), as big models' matrices are.
      const partRows = 3 * hd;
      const { m, values } = wt === "q8" || wt === "q4"
        ? qmatrix(a, N, k, { seed: 70, dtype: wt, partRows })
        : matrix(a, N, k, { seed: 70, f16: wt === "f16", partRows });
      assert.equal(m.parts.length, 3);
      const g = randomArray(k, 71), b = randomArray(N, 72);
      const table = f32(a, ropeTable(capacity, { headDim: hd, ropeTheta: THETA }));
      const cacheLen = capacity * shape.nKvHeads * hd;
      for (const positions of [[9], [33, 2, 17], [5, 6, 7, 8, 9, 10, 11, 39]]) {
        const rows = positions.length;
        const x = randomArray(rows * k, 73 + rows, 3);
        const kCache = poisonedCache(a, cacheLen, kvDtype);
        const vCache = poisonedCache(a, cacheLen, kvDtype);
        const y = poisoned(a, rows * N);
        run(
          a.gpu,
          gemv(a, {
            x: f32(a, x),
            w: m,
            y,
            rows,
            bias: f32(a, b),
            norm: { weight: f32(a, g), eps: 1e-5 },
            rope: {
              ...shape,
              capacity,
              positions: u32(a, positions),
              table,
              kCache,
              vCache,
              kvDtype,
            },
          }),
          "t",
        );
        const ref = qkvRef(x, g, values, b, k, positions);
        const got = await readF32(a, y, rows * N);
        const kGot = await readCache(a, kCache, cacheLen, kvDtype);
        const vGot = await readCache(a, vCache, cacheLen, kvDtype);
        const at = (c: Float32Array, pos: number) =>
          Array.from(c.subarray(pos * shape.nKvHeads * hd, (pos + 1) * shape.nKvHeads * hd));
        const qOf = (r: number) => Array.from(got.subarray(r * N, r * N + shape.nHeads * hd));
        const tol = kvDtype === "f16" ? F16_CACHE_TOL : F32_TOL;
        assertClose(positions.flatMap((_, r) => qOf(r)), ref.flatMap((e) => e.q), F32_TOL, "q");
        assertClose(
          positions.flatMap((p) => at(kGot, p)),
          ref.flatMap((e) => roundAs(kvDtype, e.k)),
          tol,
          "k cache",
        );
        assertClose(
          positions.flatMap((p) => at(vGot, p)),
          ref.flatMap((e) => roundAs(kvDtype, e.v)),
          tol,
          "v cache",
        );
        const untouched = [...Array(capacity).keys()].filter((p) => !positions.includes(p));
        assert.ok(
          untouched.every((p) => at(kGot, p).every(Number.isNaN)),
          "other positions untouched",
        );
        assert.ok(
          untouched.every((p) => at(vGot, p).every(Number.isNaN)),
          "other positions untouched",
        );
      }
    });
  }
}

Deno.test("gemv() with the RoPE epilogue gives each row the same bits whatever the block size", async () => {
  const a = await testArena();
  const k = 64, capacity = 40, hd = shape.headDim;
  const table = f32(a, ropeTable(capacity, { headDim: hd, ropeTheta: THETA }));
  const x = f32(a, randomArray(8 * k, 80, 2));
  const cacheLen = capacity * shape.nKvHeads * hd;
  for (
    const [name, m] of [
      ["f16", matrix(a, N, k, { seed: 81, f16: true }).m],
      ["q4", qmatrix(a, N, k, { seed: 82, dtype: "q4" }).m],
    ] as [string, Matrix][]
  ) {
    const launch = async (rows: number, rowsPerThread?: 1 | 2) => {
      const kCache = poisonedCache(a, cacheLen, "f16");
      const vCache = poisonedCache(a, cacheLen, "f16");
      const y = poisoned(a, rows * N);
      const positions = u32(a, Array.from({ length: rows }, (_, r) => 20 + r));
      const rope = {
        ...shape,
        capacity,
        positions,
        table,
        kCache,
        vCache,
        kvDtype: "f16" as const,
      };
      run(a.gpu, gemv(a, { x, w: m, y, rows, rope, tune: { rowsPerThread } }), "t");
      const words = shape.nKvHeads * hd / 2;
      return {
        q: Array.from((await readF32(a, y, N)).subarray(0, shape.nHeads * hd)),
        k: Array.from((await readU32(a, kCache, cacheLen / 2)).subarray(20 * words, 21 * words)),
        v: Array.from((await readU32(a, vCache, cacheLen / 2)).subarray(20 * words, 21 * words)),
      };
    };
    const one = await launch(1);
    for (const rows of [2, 3, 5, 8]) {
      assert.deepEqual(await launch(rows), one, `${name}, ${rows} rows`);
    }
  }
});

Deno.test("gemv() refuses the RoPE epilogue on a matrix that is not [q; k; v] split on heads", async () => {
  const a = await testArena();
  const capacity = 8, hd = shape.headDim;
  const rope = {
    ...shape,
    capacity,
    positions: u32(a, [0]),
    table: f32(a, ropeTable(capacity, { headDim: hd, ropeTheta: THETA })),
    kCache: poisoned(a, capacity * shape.nKvHeads * hd),
    vCache: poisoned(a, capacity * shape.nKvHeads * hd),
    kvDtype: "f32" as const,
  };
  const x = f32(a, randomArray(32, 83));
  const y = poisoned(a, N);
  const wrongRows = matrix(a, N - hd, 32, { seed: 84, f16: false }).m;
  assert.throws(
    () => gemv(a, { x, w: wrongRows, y, rows: 1, rope, label: "qkv" }),
    /qkv: the RoPE epilogue needs/,
  );
  const offHeads = matrix(a, N, 32, { seed: 85, f16: false, partRows: 20 }).m;
  assert.throws(
    () => gemv(a, { x, w: offHeads, y, rows: 1, rope, label: "qkv" }),
    /split on heads/,
  );
});

Deno.test("ropeKv() rounds keys and values into an f16 cache", async () => {
  const a = await testArena();
  const capacity = 30, hd = shape.headDim, rows = 3;
  const positions = [4, 29, 11];
  const qkv = randomArray(rows * N, 86, 2);
  const qkvB = f32(a, qkv);
  const cacheLen = capacity * shape.nKvHeads * hd;
  const kCache = poisonedCache(a, cacheLen, "f16");
  const vCache = poisonedCache(a, cacheLen, "f16");
  run(
    a.gpu,
    ropeKv(a, {
      ...shape,
      capacity,
      rows,
      positions: u32(a, positions),
      rope: f32(a, ropeTable(capacity, { headDim: hd, ropeTheta: THETA })),
      qkv: qkvB,
      kCache,
      vCache,
      kvDtype: "f16",
    }),
    "t",
  );
  const kGot = await readCache(a, kCache, cacheLen, "f16");
  const vGot = await readCache(a, vCache, cacheLen, "f16");
  const kRef: number[] = [], vRef: number[] = [], kAt: number[] = [], vAt: number[] = [];
  positions.forEach((pos, r) => {
    for (let h = 0; h < shape.nKvHeads; h++) {
      const kh = Array.from(
        qkv.subarray(r * N + (shape.nHeads + h) * hd, r * N + (shape.nHeads + h + 1) * hd),
      );
      ropeRef(kh, pos, { theta: THETA, scaling: null });
      kRef.push(...roundAs("f16", kh));
      const vs = r * N + (shape.nHeads + shape.nKvHeads + h) * hd;
      vRef.push(...roundAs("f16", Array.from(qkv.subarray(vs, vs + hd))));
    }
    const c = pos * shape.nKvHeads * hd;
    kAt.push(...kGot.subarray(c, c + shape.nKvHeads * hd));
    vAt.push(...vGot.subarray(c, c + shape.nKvHeads * hd));
  });
  assertClose(kAt, kRef, F16_CACHE_TOL, "k cache");
  // Values are rounded from the same f32 on both sides: exact.
  assert.deepEqual(vAt, vRef);
});

for (const kvDtype of ["f32", "f16"] as const) {
  const prefill = Array.from({ length: 21 }, (_, i) => i);
  const cases: [number[], number, number, number][] = [
    // positions, capacity, splits, headDim
    [[0], 100, attentionSplits(100), 24],
    [[45, 46, 47, 48], 100, attentionSplits(100), 24],
    [[1500], 1600, attentionSplits(1600), 24],
    [prefill, 21, 1, 8], // a prefill block: one chunk per row
  ];
  for (const [positions, capacity, splits, hd] of cases) {
    Deno.test(`attention() over an ${kvDtype} cache matches the CPU reference, merges its chunks in one launch and leaves its counters at zero (${positions.length} rows at ${positions[0]}, capacity ${capacity}, ${splits} splits)`, async () => {
      const a = await testArena();
      const rows = positions.length, nHeads = 6, nKvHeads = 3;
      const stride = (nHeads + 2 * nKvHeads) * hd;
      const qkv = randomArray(rows * stride, 90);
      const n = capacity * nKvHeads * hd;
      const kc = randomArray(n, 91, 2), vc = randomArray(n, 92);
      if (kvDtype === "f16") {
        kc.set(new Float16Array(kc));
        vc.set(new Float16Array(vc));
      }
      const store = (v: Float32Array) =>
        kvDtype === "f16" ? u32(a, new Uint32Array(new Float16Array(v).buffer)) : f32(a, v);
      const arrived = u32(a, new Uint32Array(rows * nHeads));
      const out = poisoned(a, rows * nHeads * hd);
      const launch = attention(a, {
        positions: u32(a, [...positions]),
        qkv: f32(a, qkv),
        kCache: store(kc),
        vCache: store(vc),
        kvDtype,
        partial: poisoned(a, rows * nHeads * splits * (2 + hd)),
        arrived,
        out,
        rows,
        nHeads,
        nKvHeads,
        headDim: hd,
        capacity,
        splits,
      });
      assert.equal(launch.length, 1, "one launch");
      const q: number[] = [];
      for (let r = 0; r < rows; r++) q.push(...qkv.subarray(r * stride, r * stride + nHeads * hd));
      const ref = attentionRef(q, kc, vc, {
        nHeads,
        nKvHeads,
        headDim: hd,
        positions: [...positions],
      });
      run(a.gpu, launch, "t");
      const first = await readF32(a, out, rows * nHeads * hd);
      assertClose(first, ref, F32_TOL, "attention");
      assert.ok(
        (await readU32(a, arrived, rows * nHeads)).every((c) => c === 0),
        "counters back at 0",
      );
      // A second launch on the same counters merges again, to the same bits.
      run(a.gpu, launch, "t");
      assert.deepEqual(await readF32(a, out, rows * nHeads * hd), first);
    });
  }
}
