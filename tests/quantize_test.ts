import assert from "node:assert/strict";
import { complete, ConfigError, createModel, loadModel, type Model, saveModel } from "../mod.ts";
import { quantLayout, run } from "../kernels/dispatch.ts";
import { gemv } from "../kernels/gemv.ts";
import { dequantize, quantize } from "../kernels/quantize.ts";
import { matmulRef, quantizeRef, rmsnormRef, silu, swigluRef } from "../kernels/reference.ts";
import { tiledProduct } from "../model/trunk.ts";
import { ropeTable } from "../kernels/rope_kv.ts";
import { dequantizeBytes } from "../model/weights.ts";
import { forward } from "../heads/forward.ts";
import { referenceForward } from "../heads/reference.ts";
import {
  assertClose,
  f32,
  poisoned,
  qmatrix,
  randomArray,
  randomTokens,
  readF32,
  readU32,
  rng,
  testArena,
} from "./helpers.ts";

const DTYPES = ["q8", "q4"] as const;
const F32_TOL = 1e-5;

/** A small model whose matrices quantize (every input width a multiple of 32). */
const QCONFIG = {
  vocabSize: 53,
  dModel: 64,
  nLayers: 2,
  nHeads: 2,
  nKvHeads: 1,
  headDim: 32,
  dFF: 96,
  maxSeqLen: 64,
  nFuture: 3,
};

for (const dtype of DTYPES) {
  Deno.test(`quantize() writes the CPU reference's ${dtype} codes and f16 scales into part rows`, async () => {
    const a = await testArena();
    // 3 blocks per row: an odd number of scales, padded to whole words per row in the part.
    const rows = 7, cols = 96, partRows = 10, dstRow = 2;
    const x = randomArray(rows * cols, 3, 0.7);
    x[5] = 0; // a zero, and a block of zeros (scale 0)
    x.fill(0, 32, 64);
    const l = quantLayout(dtype, partRows, cols);
    const dst = a.storage("part", l.words * 4);
    run(a.gpu, quantize(a, { src: f32(a, x), dst, dtype, rows, cols, dstRow, partRows }), "t");
    const words = await readU32(a, dst, l.words);
    const ref = quantizeRef(x, cols, dtype);
    const refScales = new Uint16Array(ref.scales.buffer);
    let near = 0;
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < cols / 32; b++) {
        const w = words[l.scaleBase + (dstRow + r) * l.scaleStride + (b >> 1)];
        assert.equal((w >>> (16 * (b & 1))) & 0xffff, refScales[r * 3 + b], `scale ${r}, ${b}`);
      }
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const word = words[(dstRow + r) * l.values + (dtype === "q8" ? c >> 2 : c >> 3)];
        const q = dtype === "q8"
          ? (word << (24 - 8 * (c & 3))) >> 24
          : ((word >>> (4 * (c & 7))) & 15) - 8;
        if (ref.near[i]) near++;
        else assert.equal(q, ref.codes[i], `code ${r}, ${c}`);
        if (ref.near[i]) assert.ok(Math.abs(q - ref.codes[i]) <= 1, `code ${r}, ${c} near a tie`);
      }
    }
    assert.ok(near < rows * cols / 50, `${near} codes near a rounding boundary`);
  });

  Deno.test(`dequantize() gives f16(q d) of every ${dtype} weight, gated parts included`, async () => {
    const a = await testArena();
    const n = 9, k = 96;
    const { m, values } = qmatrix(a, 2 * n, k, { seed: 4, dtype, gated: true, partRows: 4 });
    for (const p of m.parts) {
      const out = a.storage("out", p.outputs * 2 * k * 2);
      run(a.gpu, dequantize(a, { w: m, part: p, out }), "t");
      const got = new Float16Array(await a.gpu.read(out, p.outputs * 2 * k * 2));
      for (const [half, first] of [[0, p.start], [1, n + p.start]]) {
        const want = new Float16Array(values.subarray(first * k, (first + p.outputs) * k));
        const have = got.subarray(half * p.outputs * k, (half + 1) * p.outputs * k);
        assert.deepEqual(have, want, `part at ${p.start}, half ${half}`);
      }
    }
  });

  for (const rows of [1, 3, 8, 11]) {
    Deno.test(`gemv() matches the CPU reference for ${dtype} weights, ${rows} rows`, async () => {
      const a = await testArena();
      const n = 77, k = 544; // 17 blocks per row: an odd count; n is no multiple of anything
      const { m, values } = qmatrix(a, n, k, { seed: 4 + rows, dtype });
      const x = randomArray(rows * k, 5);
      const y = poisoned(a, rows * n);
      run(a.gpu, gemv(a, { x: f32(a, x), w: m, y, rows }), "t");
      // The reference multiplies the same dequantized weights: the f32 bound applies.
      assertClose(await readF32(a, y, rows * n), matmulRef(x, values, k), F32_TOL, "gemv");
    });
  }

  Deno.test(`gemv() epilogues (bias, silu, residual, fused norm, gated) match the reference, ${dtype}`, async () => {
    const a = await testArena();
    const rows = 5, n = 45, k = 96;
    const { m, values } = qmatrix(a, n, k, { seed: 7, dtype, partRows: 16 });
    const gated = qmatrix(a, 2 * n, k, { seed: 8, dtype, gated: true, partRows: 16 });
    const x = randomArray(rows * k, 9);
    const bias = randomArray(n, 10), res = randomArray(rows * n, 11), g = randomArray(k, 12);
    const y = poisoned(a, rows * n);
    run(
      a.gpu,
      gemv(a, {
        x: f32(a, x),
        w: m,
        y,
        rows,
        bias: f32(a, bias),
        silu: true,
        residual: f32(a, res),
      }),
      "t",
    );
    const ref = matmulRef(x, values, k).map((v, i) => silu(v + bias[i % n]) + res[i]);
    assertClose(await readF32(a, y, rows * n), ref, F32_TOL, "gemv bias+silu+residual");
    const yg = poisoned(a, rows * n);
    const norm = { weight: f32(a, g), eps: 1e-5 };
    run(a.gpu, gemv(a, { x: f32(a, x), w: gated.m, y: yg, rows, norm }), "t");
    const xn = rmsnormRef(x, g, k, 1e-5);
    assertClose(
      await readF32(a, yg, rows * n),
      swigluRef(matmulRef(xn, gated.values, k), n),
      F32_TOL,
      "gemv norm gated",
    );
  });

  Deno.test(`gemv() gives each row the same bits whatever the block size, and parts the bits of the whole, ${dtype}`, async () => {
    const a = await testArena();
    const n = 50, k = 128;
    const xb = f32(a, randomArray(8 * k, 12));
    const norm = { weight: f32(a, randomArray(k, 13)), eps: 1e-5 };
    for (const gated of [false, true]) {
      const r = gated ? 2 * n : n;
      const whole = qmatrix(a, r, k, { seed: 14, dtype, gated }).m;
      const parts = qmatrix(a, r, k, { seed: 14, dtype, gated, partRows: 12 }).m;
      assert.equal(parts.parts.length, 5);
      const y1 = poisoned(a, n);
      run(a.gpu, gemv(a, { x: xb, w: whole, y: y1, rows: 1, norm }), "t");
      const one = await readF32(a, y1, n);
      for (const rows of [3, 8]) {
        for (const w of [whole, parts]) {
          const y = poisoned(a, rows * n);
          run(a.gpu, gemv(a, { x: xb, w, y, rows, norm }), "t");
          assert.deepEqual((await readF32(a, y, rows * n)).subarray(0, n), one, `${rows} rows`);
        }
      }
    }
  });

  Deno.test(`the tiled product of long blocks dequantizes ${dtype} parts to f16 and matches the reference`, async () => {
    const a = await testArena();
    const rows = 21, n = 37, k = 96;
    const { m, values } = qmatrix(a, 2 * n, k, { seed: 20, dtype, gated: true, partRows: 10 });
    const x = randomArray(rows * k, 21);
    const y = poisoned(a, rows * 2 * n);
    const ctx = {
      arena: a,
      config: { ...QCONFIG, dModel: k, dFF: n } as never,
      rope: f32(a, ropeTable(2, { headDim: 8, ropeTheta: 1e4, ropeScaling: null } as never)),
      capacity: 2,
    };
    run(a.gpu, tiledProduct(ctx, { x: f32(a, x), w: m, y, rows, label: "t" }), "t");
    const rounded = Float32Array.from(new Float16Array(values));
    assertClose(await readF32(a, y, rows * 2 * n), matmulRef(x, rounded, k), F32_TOL, "tiled");
  });
}

/** The model's weights as the GPU holds them, dequantized: the reference's tensors. */
async function gpuTensors(model: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of model.tensorShapes()) {
    const t = await model.getTensor(name);
    const copy = t.bytes.slice();
    out.set(
      name,
      t.dtype === "q8" || t.dtype === "q4"
        ? dequantizeBytes(t, shape[1])
        : t.dtype === "f16"
        ? Float32Array.from(new Float16Array(copy.buffer))
        : new Float32Array(copy.buffer),
    );
  }
  return out;
}

for (const dtype of DTYPES) {
  for (const headKind of ["transformer", "medusa"] as const) {
    Deno.test(`a ${dtype} model's forward (${headKind} heads) matches the f64 reference on its dequantized weights`, async () => {
      // An f32 KV cache: this checks the weights at the f32 bound (model_test.ts covers f16 caches).
      const config = { ...QCONFIG, dtype, headKind, kvDtype: "f32" as const };
      const model = await createModel(config, { seed: 3 });
      try {
        assert.equal(model.placements.get("model.layers.0.mlp.down_proj.weight")!.dtype, dtype);
        assert.equal(model.placements.get("model.embed_tokens.weight")!.dtype, "f16");
        const t = await gpuTensors(model);
        // 3 tokens run the gemv (q d exactly; Medusa's shared unembedding takes 3 x 2 rows); 19
        // the tiled product (q d rounded to f16).
        for (const [n, tol] of [[3, 1e-5], [19, 1e-2]] as const) {
          const tokens = randomTokens(n, QCONFIG.vocabSize, n);
          const got = await forward(model, tokens);
          const want = referenceForward(model.config, t, tokens);
          got.forEach((g, j) => assertClose(g, want[j], tol, `${n} tokens, head ${j + 1}`));
        }
      } finally {
        model.dispose();
      }
    });
  }

  Deno.test(`speculative == greedy token for token on a ${dtype} model: 50 prompts, both head kinds`, async () => {
    const vocabSize = 7;
    const r = rng(3);
    const cases = Array.from({ length: 50 }, (_, i) => ({
      prompt: randomTokens(1 + Math.floor(r(0, 12)), vocabSize, 3000 + i),
      maxTokens: 4 + Math.floor(r(0, 20)),
    }));
    const config = { ...QCONFIG, vocabSize, dtype };
    const trunk = await createModel({ ...config, nFuture: 1 }, { seed: 5 });
    const greedy: number[][] = [];
    try {
      for (const c of cases) greedy.push((await complete(trunk, c.prompt, c)).tokens);
    } finally {
      trunk.dispose();
    }
    let accepted = 0;
    for (const headKind of ["transformer", "medusa"] as const) {
      for (const nFuture of [4]) {
        const model = await createModel({ ...config, nFuture, headKind }, { seed: 5 });
        try {
          for (let i = 0; i < cases.length; i++) {
            const { tokens, stats } = await complete(model, cases[i].prompt, {
              maxTokens: cases[i].maxTokens,
              mode: "speculative",
            });
            assert.deepEqual(tokens, greedy[i], `${headKind}, nFuture ${nFuture}, prompt ${i}`);
            accepted += stats.tokens - stats.steps;
          }
        } finally {
          model.dispose();
        }
      }
    }
    assert.ok(accepted > 20, `only ${accepted} drafts accepted: the accept path is barely tested`);
  });

  Deno.test(`quantize, save, load: ${dtype} tensors and logits bit for bit; an f16 checkpoint loads as ${dtype}`, async () => {
    const dir = await Deno.makeTempDir();
    const model = await createModel({ ...QCONFIG, dtype }, { seed: 9 });
    const f16 = await createModel({ ...QCONFIG, dtype: "f16" }, { seed: 9 });
    try {
      await saveModel(model, `${dir}/q`);
      await saveModel(f16, `${dir}/f16`);
      const again = await loadModel(`${dir}/q`);
      const fromF16 = await loadModel(`${dir}/f16`, { dtype });
      try {
        assert.equal(again.config.dtype, dtype);
        const tokens = randomTokens(5, QCONFIG.vocabSize, 1);
        for (const [name] of model.tensorShapes()) {
          const [x, y, z] = await Promise.all(
            [model, again, fromF16].map((m) => m.getTensor(name)),
          );
          assert.deepEqual(y, x, name);
          // The f16 values quantize to what quantizing their f32 originals gives here, since f16
          // rounding keeps the block maxima's order; codes may differ only next to a tie.
          assert.equal(z.dtype, x.dtype, name);
          assert.equal(z.bytes.length, x.bytes.length, name);
        }
        assert.deepEqual(await forward(again, tokens), await forward(model, tokens));
      } finally {
        again.dispose();
        fromF16.dispose();
      }
    } finally {
      model.dispose();
      f16.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("a q8 or q4 model whose widths are not whole blocks of 32 is refused with what to do", async () => {
  await assert.rejects(
    () => createModel({ ...QCONFIG, dModel: 48, headDim: 24, dtype: "q4" }),
    (e: unknown) =>
      e instanceof ConfigError && /multiple of 32/.test(e.message) &&
      /dModel \(48\)/.test(e.message) &&
      /use dtype "f16"/.test(e.message),
  );
});
