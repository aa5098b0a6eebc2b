import assert from "node:assert/strict";
import { countParameters, createModel, forward, type ModelConfigInput } from "../mod.ts";
import { referenceForward } from "../heads/reference.ts";
import { argmaxRef, relativeError } from "../kernels/reference.ts";
import { run } from "../kernels/dispatch.ts";
import { ropeTable } from "../kernels/rope_kv.ts";
import { allocKv, allocScratch, type ForwardContext, trunk } from "../model/trunk.ts";
import { Session } from "../decode/session.ts";
import { S } from "../kernels/state.ts";
import { ALL_FEATURES, f32, FEATURES, randomTokens, readU32, tensorsOf, tiny } from "./helpers.ts";

// f16 weights are rounded in the reference too; q8 and q4 models have their own tests
// (quantize_test.ts), on the weights the GPU holds. f16 models keep an f16 KV cache, rounded in
// the reference too, but from f64 values where the GPU rounds f32 ones: where the two straddle a
// rounding midpoint, a key or value lands one f16 step (2^-11) away. One such element moved the
// tiny model's logits by 1.3e-4 on an H200 (21 tokens); a wrong rotation or cache slot moves them
// by O(1).
const tolerance = (c: { kvDtype: string }) => c.kvDtype === "f16" ? 2e-3 : 1e-4;

/** forward() against the whole-model CPU reference at 1, 6 and 21 tokens. */
async function checkForward(config: ModelConfigInput) {
  const model = await createModel(config, { seed: 7 });
  try {
    const tensors = tensorsOf(model, 7);
    for (const len of [1, 6, 21]) { // 21 > 8 rows: the tiled matmul path
      const tokens = randomTokens(len, config.vocabSize, len);
      const gpu = await forward(model, tokens);
      const ref = referenceForward(model.config, tensors, tokens);
      assert.equal(gpu.length, model.config.nFuture);
      for (let h = 0; h < ref.length; h++) {
        const err = relativeError(gpu[h], ref[h]);
        assert.ok(
          err < tolerance(model.config),
          `head ${h + 1}, ${len} tokens: relative error ${err}`,
        );
      }
    }
  } finally {
    model.dispose();
  }
}

for (const headKind of ["transformer", "medusa"] as const) {
  for (const dtype of ["f32", "f16"] as const) {
    Deno.test(`forward() matches the CPU reference for every head: ${headKind} heads, ${dtype}`, async () => {
      const config = tiny({ headKind, dtype, tieEmbeddings: dtype === "f16" });
      const model = await createModel(config, { seed: 7 });
      try {
        const tensors = tensorsOf(model, 7);
        for (const len of [1, 6, 21]) { // 21 > 8 rows: the tiled matmul path
          const tokens = randomTokens(len, config.vocabSize, len);
          const gpu = await forward(model, tokens);
          const ref = referenceForward(model.config, tensors, tokens);
          assert.equal(gpu.length, 3);
          for (let h = 0; h < ref.length; h++) {
            const err = relativeError(gpu[h], ref[h]);
            const tol = tolerance(model.config);
            assert.ok(err < tol, `head ${h + 1}, ${len} tokens: relative error ${err}`);
          }
        }
      } finally {
        model.dispose();
      }
    });
  }
}

for (const [feature, changes] of Object.entries({ ...FEATURES, "every feature": ALL_FEATURES })) {
  for (const headKind of ["transformer", "medusa"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      Deno.test(`forward() matches the CPU reference with ${feature}: ${headKind} heads, ${dtype}`, () =>
        checkForward(tiny({ ...changes, headKind, dtype, tieEmbeddings: dtype === "f16" })));
    }
  }
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`forward() matches the CPU reference with the heads' own unembedding: medusa heads, ${dtype}`, () =>
    checkForward(tiny({ headKind: "medusa", headsOwnUnembedding: true, dtype })));
  Deno.test(`forward() matches the CPU reference with every feature and the heads' own unembedding: medusa heads, ${dtype}`, () =>
    checkForward(
      tiny({ ...ALL_FEATURES, headKind: "medusa", headsOwnUnembedding: true, dtype, nFuture: 4 }),
    ));
}

Deno.test("tensorShapes() lists exactly the tensors the model places, new features included", async () => {
  for (
    const config of [
      tiny({ ...ALL_FEATURES }),
      tiny({ ...ALL_FEATURES, headKind: "medusa", headsOwnUnembedding: true }),
    ]
  ) {
    const model = await createModel(config, { seed: 1 });
    try {
      const shapes = new Map(model.tensorShapes());
      assert.equal(shapes.size, model.tensorShapes().length, "a name is listed twice");
      assert.deepEqual(
        new Map([...model.placements].map(([name, p]) => [name, p.shape])),
        shapes,
      );
      const c = model.config;
      const hd = c.headDim;
      const expect: [string, number[]][] = [
        ["model.layers.1.self_attn.q_proj.bias", [c.nHeads * hd]],
        ["model.layers.1.self_attn.k_proj.bias", [c.nKvHeads * hd]],
        ["model.layers.1.self_attn.v_proj.bias", [c.nKvHeads * hd]],
        ["model.layers.1.self_attn.o_proj.bias", [c.dModel]],
        ["model.layers.0.self_attn.q_norm.weight", [hd]],
        ["model.layers.0.self_attn.k_norm.weight", [hd]],
        c.headKind === "medusa"
          ? ["medusa_head.1.1.weight", [c.vocabSize, c.dModel]]
          : ["mtp_heads.1.self_attn.q_norm.weight", [hd]],
      ];
      for (const [name, shape] of expect) assert.deepEqual(shapes.get(name), shape, name);
      const plain = countParameters({
        ...c,
        qkvBias: false,
        oBias: false,
        qkNorm: false,
        headsOwnUnembedding: false,
      });
      const layers = c.nLayers + (c.headKind === "transformer" ? c.nFuture - 1 : 0);
      const own = c.headsOwnUnembedding ? (c.nFuture - 1) * c.vocabSize * c.dModel : 0;
      assert.equal(
        countParameters(c),
        plain + layers * ((c.nHeads + 2 * c.nKvHeads) * hd + 2 * hd + c.dModel) + own,
        "countParameters counts the biases, q/k norms and the heads' own unembeddings",
      );
    } finally {
      model.dispose();
    }
  }
});

const draftCases: [string, ModelConfigInput][] = [
  ["transformer heads", tiny({ ...ALL_FEATURES, nFuture: 4 })],
  ["medusa heads", tiny({ ...ALL_FEATURES, headKind: "medusa", nFuture: 4 })],
  [
    "medusa heads with their own unembedding",
    tiny({ ...ALL_FEATURES, headKind: "medusa", headsOwnUnembedding: true, nFuture: 4 }),
  ],
];
for (const [name, config] of draftCases) {
  Deno.test(`draft() proposes the argmax of each head's forward() logits at the row it is given: ${name}`, async () => {
    const model = await createModel(config, { seed: 9 });
    const c = model.config;
    const n = 6, v = c.vocabSize;
    const tokens = randomTokens(n, v, 40);
    const arena = model.gpu.arena("draft test");
    try {
      const logits = await forward(model, tokens);
      const ctx: ForwardContext = {
        arena,
        config: c,
        rope: f32(arena, ropeTable(n, c)),
        capacity: n,
      };
      const s = allocScratch(arena, c, n, n);
      const ids = arena.tensor("ids", [n], "u32", Uint32Array.from(tokens));
      const positions = arena.tensor(
        "positions",
        [n],
        "u32",
        Uint32Array.from(tokens, (_, i) => i),
      );
      const heads = model.kind.attach(ctx, model.trunk, model.heads);
      for (const row of [2, 5]) {
        const drafts = arena.tensor("drafts", [c.nFuture], "u32");
        const index = arena.tensor("row", [1], "u32", Uint32Array.of(row));
        run(model.gpu, [
          ...trunk(ctx, model.trunk, { ids, positions, kv: allocKv(arena, c, n, c.nLayers), s }),
          ...heads.block({ s, ids, positions }),
          ...heads.draft({
            s,
            row: { buffer: index.buffer, at: 0 },
            ids: drafts,
            positions,
            tokens: ids,
          }),
        ], "draft test");
        const got = Array.from(await readU32(arena, drafts, c.nFuture)).slice(1);
        const want = logits.slice(1).map((l) =>
          argmaxRef(l.subarray(row * v, (row + 1) * v), v)[0]
        );
        assert.deepEqual(got, want, `row ${row}`);
      }
    } finally {
      arena.dispose();
      model.dispose();
    }
  });
}

Deno.test("a different seed gives different weights, the same seed the same logits", async () => {
  const a = await createModel(tiny(), { seed: 1 });
  const b = await createModel(tiny(), { seed: 1 });
  const c = await createModel(tiny(), { seed: 2 });
  try {
    const [la] = await forward(a, [1, 2, 3]);
    const [lb] = await forward(b, [1, 2, 3]);
    const [lc] = await forward(c, [1, 2, 3]);
    assert.deepEqual(la, lb);
    assert.ok(relativeError(lc, la) > 0.1);
  } finally {
    a.dispose();
    b.dispose();
    c.dispose();
  }
});

for (const features of [false, true]) {
  for (const promptLength of [1, 9, 70]) { // 70 > one prefill chunk of 64
    const named = features ? ", every trunk feature on" : "";
    Deno.test(`prefill of ${promptLength} tokens then decode steps give the logits of a full forward at every step${named}`, async () => {
      const model = await createModel(tiny({ nFuture: 1, ...(features ? ALL_FEATURES : {}) }), {
        seed: 3,
      });
      try {
        const prompt = randomTokens(promptLength, 67, 100 + promptLength);
        const session = new Session(model, { k: 1, drafts: null, promptLength });
        const gpu = model.gpu;
        const steps = 6;
        const stepLogits: Float32Array[] = [];
        session.start(prompt, { limit: promptLength + steps, stop: [] });
        const slot = session.readback();
        for (let i = 0; i < steps; i++) {
          gpu.device.queue.submit([session.encodeSteps(1, slot)]);
          stepLogits.push(new Float32Array(await gpu.read(session.logits.buffer), 0, 67));
        }
        await slot.buffer.mapAsync(GPUMapMode.READ);
        const snap = session.snapshot(slot);
        assert.equal(snap.state[S.LEN], promptLength + steps);
        const sequence = Array.from(snap.tokens.subarray(0, promptLength + steps));
        session.dispose();
        const [full] = await forward(model, sequence);
        for (let i = 0; i < steps; i++) {
          const row = promptLength - 1 + i;
          const err = relativeError(stepLogits[i], full.subarray(row * 67, (row + 1) * 67));
          assert.ok(err < 1e-5, `step ${i}: relative error ${err}`);
        }
      } finally {
        model.dispose();
      }
    });
  }
}

Deno.test("model.dispose() frees every buffer, and a disposed model refuses work", async () => {
  const model = await createModel(tiny(), { seed: 1 });
  assert.ok(model.liveBuffers > 0);
  model.dispose();
  assert.equal(model.liveBuffers, 0);
  await assert.rejects(() => forward(model, [1]), { name: "ModelStateError" });
});
