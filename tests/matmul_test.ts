import assert from "node:assert/strict";
import { run } from "../kernels/dispatch.ts";
import {
  checkTune,
  matmul,
  matmulDw,
  matmulDx,
  type MatmulTune,
  splitCount,
} from "../kernels/matmul.ts";
import { matmulDwRef, matmulDxRef, matmulForwardRef } from "../kernels/reference_matmul.ts";
import { relativeError } from "../kernels/reference.ts";
import { S } from "../kernels/state.ts";
import { ShapeError } from "../gpu/errors.ts";
import { f32, matrix, poisoned, randomArray, readF32, stateTensor, testArena } from "./helpers.ts";

// The reference takes the f16-rounded weights the GPU holds, so f16 weights meet the f32 bound.
const TOL = 1e-5;

function assertClose(gpu: ArrayLike<number>, ref: ArrayLike<number>, what: string) {
  for (let i = 0; i < gpu.length; i++) {
    assert.ok(Number.isFinite(gpu[i]), `${what}: element ${i} is ${gpu[i]} (not written?)`);
  }
  const err = relativeError(gpu, ref);
  assert.ok(err < TOL, `${what}: relative error ${err} >= ${TOL}`);
}

/** Tile shapes of every kind: 8x8, 4x8, 8x4 and 4x4 per thread, 1 to 4 loads per operand. */
const TILES: MatmulTune[] = [
  { tm: 8, tn: 8, wx: 16, wy: 16, bk: 16 },
  { tm: 8, tn: 8, wx: 8, wy: 8, bk: 16 },
  { tm: 4, tn: 8, wx: 8, wy: 8, bk: 8 },
  { tm: 8, tn: 4, wx: 8, wy: 16, bk: 4 },
  { tm: 4, tn: 4, wx: 16, wy: 16, bk: 16 },
];
const name = (t: MatmulTune) =>
  `${t.tm * t.wy}x${t.tn * t.wx}/${t.tm}x${t.tn}/bk${t.bk}/split${t.split ?? 1}` +
  (t.prefetch === false ? "/no prefetch" : "");

for (const f16 of [false, true]) {
  const dt = f16 ? "f16" : "f32";

  Deno.test(`matmul() matches the CPU reference on odd shapes with every tile, ${dt} weights, and every unsplit tile gives the same bits`, async () => {
    const a = await testArena();
    const rows = 45, n = 83;
    for (const k of [151, 152]) { // odd K: element loads of x and W; K % 4 == 0: vector loads
      const { m, values } = matrix(a, n, k, { seed: 1 + k, f16 });
      const x = randomArray(rows * k, 2 + k);
      const bias = randomArray(n, 3 + k);
      const ref = matmulForwardRef(x, values, { k, bias });
      const xt = f32(a, x), bt = f32(a, bias);
      let first: Float32Array | null = null;
      const more = [{ ...TILES[1], split: 3 }, { ...TILES[2], split: 2 }, {
        ...TILES[0],
        prefetch: false,
      }];
      for (const tune of [...TILES, ...more]) {
        const y = poisoned(a, rows * n);
        run(a.gpu, matmul(a, { x: xt, w: m, y, rows, bias: bt, tune }), "t");
        const got = await readF32(a, y, rows * n);
        assertClose(got, ref, `k ${k}, ${name(tune)}`);
        if ((tune.split ?? 1) === 1) {
          if (first) assert.deepEqual(got, first, `k ${k}, ${name(tune)}: other bits`);
          first ??= got;
        }
      }
    }
  });

  Deno.test(`matmul() over a gated matrix split into odd parts gives the bits of the whole and the reference, split K or not, ${dt}`, async () => {
    const a = await testArena();
    const rows = 21, n = 30, k = 130;
    const whole = matrix(a, 2 * n, k, { seed: 4, f16, gated: true });
    const parts = matrix(a, 2 * n, k, { seed: 4, f16, gated: true, partRows: 7 }).m;
    assert.equal(parts.parts.length, 5);
    const x = randomArray(rows * k, 5);
    const xt = f32(a, x);
    const ref = matmulForwardRef(x, whole.values, { k }); // [gate; up] rows: gate columns first
    for (const tune of [undefined, { ...TILES[1], split: 3 }, { ...TILES[3], split: 1 }]) {
      const out = async (w: typeof parts) => {
        const y = poisoned(a, rows * 2 * n);
        run(a.gpu, matmul(a, { x: xt, w, y, rows, tune }), "t");
        return await readF32(a, y, rows * 2 * n);
      };
      const got = await out(parts);
      assertClose(got, ref, `gated, tune ${tune ? name(tune) : "measured"}`);
      assert.deepEqual(
        got,
        await out(whole.m),
        `parts vs whole, ${tune ? name(tune) : "measured"}`,
      );
    }
  });

  Deno.test(`matmulDx() matches the CPU reference on odd shapes, plain and gated, split into parts, accumulating, ${dt}`, async () => {
    const a = await testArena();
    const rows = 37, k = 71;
    for (const gated of [false, true]) {
      const n = gated ? 26 : 53;
      const cols = gated ? 2 * n : n;
      const { values } = matrix(a, cols, k, { seed: 6, f16, gated });
      const { m } = matrix(a, cols, k, { seed: 6, f16, gated, partRows: 10 });
      const dy = randomArray(rows * cols, 7);
      const ref = matmulDxRef(dy, values, { k });
      const dyt = f32(a, dy);
      for (const tune of [undefined, TILES[0], { ...TILES[2], split: 3 }]) {
        const what = `gated ${gated}, ${tune ? name(tune) : "measured"}`;
        const dx = poisoned(a, rows * k);
        run(a.gpu, matmulDx(a, { dy: dyt, w: m, dx, rows, tune }), "t");
        assertClose(await readF32(a, dx, rows * k), ref, what);
        const start = randomArray(rows * k, 8);
        const acc = f32(a, start);
        run(a.gpu, matmulDx(a, { dy: dyt, w: m, dx: acc, rows, tune, accumulate: true }), "t");
        assertClose(
          await readF32(a, acc, rows * k),
          ref.map((v, i) => v + start[i]),
          `${what}, accumulate`,
        );
      }
    }
  });
}

Deno.test("matmulDw() matches the CPU reference on odd shapes, with rows inside wider tensors, accumulating", async () => {
  const a = await testArena();
  const rows = 150, n = 45, k = 67;
  const dy = randomArray(rows * n, 9);
  const x = randomArray(rows * k, 10);
  const ref = matmulDwRef(dy, x, { n, k });
  const dyt = f32(a, dy), xt = f32(a, x);
  // dY's columns 3..3+n of rows of 52, X's rows at 4 + r * 68: aligned for vector loads
  const dyWide = new Float32Array(rows * 52), xWide = new Float32Array(4 + rows * 68);
  for (let r = 0; r < rows; r++) {
    dyWide.set(dy.subarray(r * n, (r + 1) * n), r * 52 + 3);
    xWide.set(x.subarray(r * k, (r + 1) * k), 4 + r * 68);
  }
  const dyWt = f32(a, dyWide), xWt = f32(a, xWide);
  for (const tune of [undefined, TILES[0], { ...TILES[1], split: 4 }, TILES[3], TILES[4]]) {
    const what = tune ? name(tune) : "measured";
    const dw = poisoned(a, n * k);
    run(a.gpu, matmulDw(a, { dy: dyt, x: xt, dw, rows, n, k, tune }), "t");
    assertClose(await readF32(a, dw, n * k), ref, what);
    const wide = poisoned(a, n * k);
    const dyRows = { offset: 3, stride: 52 }, xRows = { offset: 4, stride: 68 };
    run(a.gpu, matmulDw(a, { dy: dyWt, x: xWt, dw: wide, rows, n, k, dyRows, xRows, tune }), "t");
    assertClose(await readF32(a, wide, n * k), ref, `${what}, wide rows`);
    const start = randomArray(n * k, 11);
    const acc = f32(a, start);
    run(a.gpu, matmulDw(a, { dy: dyt, x: xt, dw: acc, rows, n, k, tune, accumulate: true }), "t");
    assertClose(await readF32(a, acc, n * k), ref.map((v, i) => v + start[i]), `${what}, +=`);
  }
});

Deno.test("matmul(), matmulDx() and matmulDw() return at once when their done flag is set, split or not", async () => {
  const a = await testArena();
  const done = stateTensor(a, { [S.DONE]: 1 }).buffer;
  const rows = 40, n = 44, k = 36;
  const { m } = matrix(a, n, k, { seed: 12, f16: false });
  const x = f32(a, randomArray(rows * k, 13));
  const dy = f32(a, randomArray(rows * n, 14));
  for (const split of [1, 3]) {
    const tune = { ...TILES[1], split };
    const outs = [
      [
        "matmul",
        rows * n,
        (y: ReturnType<typeof poisoned>) => matmul(a, { x, w: m, y, rows, tune, done }),
      ],
      [
        "matmulDx",
        rows * k,
        (y: ReturnType<typeof poisoned>) => matmulDx(a, { dy, w: m, dx: y, rows, tune, done }),
      ],
      [
        "matmulDw",
        n * k,
        (y: ReturnType<typeof poisoned>) => matmulDw(a, { dy, x, dw: y, rows, n, k, tune, done }),
      ],
    ] as const;
    for (const [what, size, launch] of outs) {
      const y = poisoned(a, size);
      const d = launch(y);
      assert.equal(d.length, split > 1 ? 2 : 1, `${what}: a split launch adds its reduction`);
      run(a.gpu, d, "t");
      assert.ok((await readF32(a, y, size)).every(Number.isNaN), `${what}, split ${split}`);
    }
  }
});

Deno.test("matmul() refuses tiles the kernel cannot run and splits K only when tiles are few", () => {
  for (
    const t of [
      { tm: 6, tn: 8, wx: 8, wy: 8, bk: 16 },
      { tm: 8, tn: 8, wx: 8, wy: 8, bk: 6 },
      { tm: 8, tn: 8, wx: 8, wy: 8, bk: 32 }, // 8 loads of A per thread: more than 4
    ]
  ) {
    assert.throws(() => checkTune(t as MatmulTune, "t"), ShapeError, JSON.stringify(t));
  }
  const tile = TILES[0];
  assert.equal(splitCount(4096, 4096, 4096, tile), 1);
  assert.ok(splitCount(64, 2048, 2048, tile) > 1);
  assert.equal(splitCount(64, 2048, 200, tile), 1); // too little K to share
});
