import assert from "node:assert/strict";
import {
  complete,
  createModel,
  forward,
  generate,
  GpuError,
  InvalidInputError,
  type Model,
  ModelStateError,
  ShapeError,
} from "../mod.ts";
import { createGpu } from "../gpu/device.ts";
import { randomTokens, tensorsOf, tiny } from "./helpers.ts";

type Run = (model: Model, onChunk: () => void) => Promise<unknown>;
const runs: Record<string, Run> = {
  generate: async (model, onChunk) => {
    for await (const _ of generate(model, [1, 2, 3], { maxTokens: 80, mode: "speculative" })) {
      onChunk();
    }
  },
  complete: (model, onChunk) => {
    const p = complete(model, [1, 2, 3], { maxTokens: 80 });
    // complete() exposes no chunks: dispose once its generation has submitted work.
    setTimeout(onChunk, 30);
    return p;
  },
  forward: (model, onChunk) => {
    const p = forward(model, randomTokens(90, 67, 1));
    onChunk(); // forward has submitted its work and waits on the read-back now
    return p;
  },
};

for (const shared of [false, true]) {
  for (const [name, start] of Object.entries(runs)) {
    const where = shared ? "a shared device" : "the model's own device";
    Deno.test(`model.dispose() during ${name}() ends it with a ModelStateError on ${where}, leaving nothing behind`, async () => {
      const gpu = shared ? await createGpu() : null;
      const model = await createModel(tiny(), { seed: 2, device: gpu?.device });
      const rejections: unknown[] = [];
      const onRejection = (e: PromiseRejectionEvent) => {
        rejections.push(e.reason);
        e.preventDefault();
      };
      globalThis.addEventListener("unhandledrejection", onRejection);
      try {
        await assert.rejects(
          () => start(model, () => model.dispose()),
          (e: unknown) => {
            assert.ok(e instanceof ModelStateError, `got ${e}`);
            assert.match(e.message, /the model was disposed during/);
            return true;
          },
        );
        await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(rejections, [], "no promise was left unhandled");
        assert.equal(model.liveBuffers, 0);
        if (gpu) {
          // The shared device still works for others.
          const other = await createModel(tiny(), { seed: 3, device: gpu.device });
          assert.equal((await complete(other, [1], { maxTokens: 3 })).tokens.length, 3);
          other.dispose();
        }
      } finally {
        globalThis.removeEventListener("unhandledrejection", onRejection);
        model.dispose();
        gpu?.dispose();
      }
    });
  }
}

Deno.test("createModel() on a device with WebGPU's default limits names the limits it needs", async () => {
  const adapter = (await navigator.gpu.requestAdapter())!;
  const device = await adapter.requestDevice();
  try {
    await assert.rejects(() => createModel(tiny(), { device }), (e: unknown) => {
      assert.ok(e instanceof GpuError);
      assert.match(e.message, /limits are too low for this model/);
      assert.match(e.message, /maxComputeInvocationsPerWorkgroup is 256, needs 1024/);
      assert.match(e.message, /maxComputeWorkgroupStorageSize is 16384, needs 16416/);
      return true;
    });
  } finally {
    device.destroy();
  }
});

Deno.test("setTensor() takes f16 and bf16 bytes as a checkpoint stores them", async () => {
  for (const dtype of ["f32", "f16"] as const) {
    const a = await createModel(tiny({ dtype }), { seed: 4 });
    const b = await createModel(tiny({ dtype }), { seed: 5 });
    try {
      // b gets a's weights as f16 (a Float16Array, or raw bytes), a the same values as f32.
      let i = 0;
      for (const [name, data] of tensorsOf(a, 4)) {
        const half = new Float16Array(data);
        b.setTensor(name, i++ % 2 ? half : { dtype: "f16", bytes: new Uint8Array(half.buffer) });
        a.setTensor(name, Float32Array.from(half));
      }
      const [la] = await forward(a, [1, 2, 3]);
      const [lb] = await forward(b, [1, 2, 3]);
      assert.deepEqual(lb, la);
      // bf16: the top 16 bits of each f32.
      for (const [name, data] of tensorsOf(a, 4)) {
        const top = new Uint16Array(data.length);
        const words = new Uint32Array(data.buffer, data.byteOffset, data.length);
        for (let i = 0; i < top.length; i++) top[i] = words[i] >>> 16;
        b.setTensor(name, { dtype: "bf16", bytes: new Uint8Array(top.buffer) });
        const truncated = new Float32Array(
          new Uint32Array(top.length).map((_, i) => top[i] << 16).buffer,
        );
        a.setTensor(name, truncated);
      }
      const [la2] = await forward(a, [1, 2, 3]);
      const [lb2] = await forward(b, [1, 2, 3]);
      assert.deepEqual(lb2, la2);
    } finally {
      a.dispose();
      b.dispose();
    }
  }
});

Deno.test("setTensor() refuses unknown names and data of the wrong size with the library's errors", async () => {
  const model = await createModel(tiny(), { seed: 1 });
  try {
    assert.throws(
      () => model.setTensor("model.layers.9.mlp.up_proj.weight", new Float32Array(4)),
      (e: unknown) => {
        assert.ok(e instanceof InvalidInputError);
        assert.match(
          e.message,
          /unknown tensor model\.layers\.9\.mlp\.up_proj\.weight: model\.tensorShapes\(\) lists/,
        );
        return true;
      },
    );
    assert.throws(() => model.setTensor("model.norm.weight", new Float32Array(5)), (e: unknown) => {
      assert.ok(e instanceof ShapeError);
      assert.equal(e.message, "model.norm.weight: shape [24] needs 24 values, got 5");
      return true;
    });
  } finally {
    model.dispose();
  }
});

Deno.test("a model whose matrices are split into parts over a small binding limit computes the same bits", async () => {
  for (
    const config of [tiny({ dtype: "f16" }), tiny({ tieEmbeddings: true, headKind: "medusa" })]
  ) {
    const whole = await createModel(config, { seed: 6 });
    // 2 KiB: the embedding, lm_head and gate/up matrices of the tiny model each take several parts.
    const split = await createModel(config, { seed: 6, maxBindingBytes: 2048 });
    try {
      const prompt = randomTokens(20, 67, 7);
      const a = await forward(whole, prompt);
      const b = await forward(split, prompt);
      assert.deepEqual(b, a);
      const g = await complete(whole, prompt, { maxTokens: 20, mode: "speculative" });
      const h = await complete(split, prompt, { maxTokens: 20, mode: "speculative" });
      assert.deepEqual(h.tokens, g.tokens);
      assert.ok(
        h.stats.dispatchesPerStep > g.stats.dispatchesPerStep,
        "the split model launches per part",
      );
    } finally {
      whole.dispose();
      split.dispose();
    }
  }
});
