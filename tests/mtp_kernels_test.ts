// The kernels of sequential MTP modules against CPU references, at odd sizes: mtp_rows (row
// positions and tokens), mtp_concat (both orders, rows or history, with and without a first
// norm), scatter_rows, gather_rows with an offset, and columns (training's split of the input).
import assert from "node:assert/strict";
import { run } from "../kernels/dispatch.ts";
import { mtpRows } from "../kernels/mtp_rows.ts";
import { mtpConcat } from "../kernels/mtp_concat.ts";
import { scatterRows } from "../kernels/scatter_rows.ts";
import { gatherRows } from "../kernels/gather_rows.ts";
import { columns } from "../kernels/columns.ts";
import { rmsnormRef } from "../kernels/reference.ts";
import { NO_TOKEN } from "../kernels/state.ts";
import {
  assertClose,
  f32,
  poisoned,
  randomArray,
  readF32,
  readU32,
  testArena,
  u32,
} from "./helpers.ts";

Deno.test("mtpRows() places rows, reads their tokens, and sends rows before position 0 to the trash", async () => {
  const a = await testArena();
  const src = Array.from({ length: 40 }, (_, i) => 100 + i);
  const ids = [7, 71, 72, 73, 74];
  // [start, headRow, ahead, fromIds, positions[0]]
  const cases = [
    [0, null, 1, false, 5], // prefill chunk, module 1
    [-2, null, 3, false, 1], // module 3: rows before position 0
    [-1, 2, 2, false, 20], // decode catch-up: P = 20 - 2 - 1
    [-2, null, 3, true, 30], // draft depth 3 over drafts 1..2 (ids)
    [1, null, 1, true, 30], // the last module again, one further on
    [-1, null, 2, false, 38], // tokens past srcLen: none
  ] as const;
  const rows = 3, trash = 99;
  for (const [start, headRow, ahead, fromIds, p0] of cases) {
    const outPos = u32(a, [0, 0, 0]), outTok = u32(a, [0, 0, 0]);
    const state = u32(a, [0, 0, 0, headRow ?? 0]);
    run(a.gpu, [
      ...mtpRows(a, {
        rows,
        start,
        headRow: headRow === null ? undefined : { buffer: state.buffer, at: 3 },
        positions: u32(a, [p0, p0 + 1]),
        ahead,
        src: u32(a, fromIds ? ids : src),
        srcLen: fromIds ? ids.length : src.length,
        fromIds,
        trash,
        outPos,
        outTok,
        label: "t",
      }),
    ], "t");
    const pos = Array.from(await readU32(a, outPos, rows));
    const tok = Array.from(await readU32(a, outTok, rows));
    for (let r = 0; r < rows; r++) {
      const q = p0 + start + r - (headRow === null ? 0 : headRow + 1);
      const what = `start ${start}, row ${r}`;
      if (q < 0) {
        assert.equal(pos[r], trash, what);
        assert.equal(tok[r], NO_TOKEN, what);
        continue;
      }
      assert.equal(pos[r], q, what);
      const i = q + ahead - (fromIds ? p0 : 0);
      const list = fromIds ? ids : src;
      assert.equal(tok[r], q > 0 && i < list.length ? list[i] : NO_TOKEN, what);
    }
  }
});

Deno.test("mtpConcat() matches RMSNorm of both halves in either order, from rows or by position, with a first norm", async () => {
  const a = await testArena();
  const rows = 3, dim = 300, eps = 1e-5, cap = 7;
  const h = randomArray(cap * dim, 1, 2), e = randomArray(rows * dim, 2);
  const gh = randomArray(dim, 3), ge = randomArray(dim, 4), gp = randomArray(dim, 5);
  const pos = [4, 0, 6];
  for (const hiddenFirst of [true, false]) {
    for (const history of [undefined, { shift: -1 }]) {
      for (const pre of [false, true]) {
        const out = poisoned(a, rows * 2 * dim);
        run(
          a.gpu,
          mtpConcat(a, {
            rows,
            dim,
            eps,
            pos: u32(a, pos),
            h: f32(a, h),
            history,
            e: f32(a, e),
            gh: f32(a, gh),
            ge: f32(a, ge),
            preNorm: pre ? f32(a, gp) : null,
            hiddenFirst,
            out,
            label: "t",
          }),
          "t",
        );
        const want = new Float64Array(rows * 2 * dim);
        for (let r = 0; r < rows; r++) {
          const hr = history ? pos[r] + history.shift : r;
          let x: ArrayLike<number> = h.subarray(hr * dim, (hr + 1) * dim);
          if (pre) x = rmsnormRef(x, gp, dim, eps);
          const hn = rmsnormRef(x, gh, dim, eps);
          const en = rmsnormRef(e.subarray(r * dim, (r + 1) * dim), ge, dim, eps);
          want.set(hiddenFirst ? hn : en, r * 2 * dim);
          want.set(hiddenFirst ? en : hn, r * 2 * dim + dim);
        }
        const what = `hiddenFirst ${hiddenFirst}, history ${!!history}, pre ${pre}`;
        assertClose(await readF32(a, out, rows * 2 * dim), want, 1e-5, what);
      }
    }
  }
});

Deno.test("scatterRows(), gatherRows() with an offset and columns() move exactly the right values", async () => {
  const a = await testArena();
  const rows = 3, dim = 261, cap = 6;
  const x = randomArray(rows * dim, 6);
  const hist = poisoned(a, cap * dim);
  const pos = [5, 1, 3];
  const sel = poisoned(a, dim);
  const cols = poisoned(a, rows * 100);
  run(a.gpu, [
    ...scatterRows(a, { rows, dim, pos: u32(a, pos), x: f32(a, x), out: hist, label: "t" }),
    // row positions[0] + add = 4 - 3 = 1 of hist: x's row 1
    ...gatherRows(a, {
      x: hist,
      out: sel,
      index: { buffer: u32(a, [4]).buffer, at: 0 },
      add: -3,
      rows: cap,
      dim,
      outRow: 0,
    }),
    ...columns(a, { x: f32(a, x), out: cols, rows, n: 100, stride: dim, offset: 150 }),
  ], "t");
  const got = await readF32(a, hist, cap * dim);
  for (let r = 0; r < rows; r++) {
    assert.deepEqual(
      Array.from(got.subarray(pos[r] * dim, (pos[r] + 1) * dim)),
      Array.from(x.subarray(r * dim, (r + 1) * dim)),
    );
  }
  assert.ok(got.subarray(0, dim).every(Number.isNaN), "row 0 is not written");
  assert.deepEqual(Array.from(await readF32(a, sel, dim)), Array.from(x.subarray(dim, 2 * dim)));
  const c = await readF32(a, cols, rows * 100);
  for (let r = 0; r < rows; r++) {
    assert.deepEqual(
      Array.from(c.subarray(r * 100, (r + 1) * 100)),
      Array.from(x.subarray(r * dim + 150, r * dim + 250)),
    );
  }
});
