import assert from "node:assert/strict";
import { createModel, forward } from "../mod.ts";
import { referenceForward } from "../heads/reference.ts";
import { relativeError } from "../kernels/reference.ts";
import { Session } from "../decode/session.ts";
import { S } from "../kernels/state.ts";
import { randomTokens, tensorsOf, tiny } from "./helpers.ts";

const TOL = { f32: 1e-4, f16: 1e-4 }; // f16 weights are rounded in the reference too

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
            assert.ok(err < TOL[dtype], `head ${h + 1}, ${len} tokens: relative error ${err}`);
          }
        }
      } finally {
        model.dispose();
      }
    });
  }
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

for (const promptLength of [1, 9, 70]) { // 70 > one prefill chunk of 64
  Deno.test(`prefill of ${promptLength} tokens then decode steps give the logits of a full forward at every step`, async () => {
    const model = await createModel(tiny({ nFuture: 1 }), { seed: 3 });
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

Deno.test("model.dispose() frees every buffer, and a disposed model refuses work", async () => {
  const model = await createModel(tiny(), { seed: 1 });
  assert.ok(model.liveBuffers > 0);
  model.dispose();
  assert.equal(model.liveBuffers, 0);
  await assert.rejects(() => forward(model, [1]), { name: "ModelStateError" });
});
