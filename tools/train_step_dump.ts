/**
 * ahead's side of the PyTorch training-step check (tools/torch_step_check.py runs it): builds a
 * small multi-token model, initialises it for training, and writes
 * - OUT/before: the model (config.json + model.safetensors, f32),
 * - OUT/batch.json: the batch (ids and each head's targets) and the optimizer settings,
 * - OUT/grads.safetensors: every gradient of one training step, under the parameter names of
 *   train/program.ts (fused q/k/v as `...self_attn.qkv`, gate and up as `...mlp.gate_up`),
 * - OUT/after: the model after that step's AdamW update, and OUT/losses.json.
 *
 *     deno run -A --unstable-webgpu tools/train_step_dump.ts --out DIR
 *       [--head-kind transformer|medusa] [--own-unembedding] [--trunk llama|qwen2|qwen3]
 *
 * `--trunk qwen2` gives the attention q/k/v and o biases, `qwen3` per-head q/k norms. Training's
 * initialisation starts biases at 0, norms at 1 and Medusa's ResBlocks at 0; here those are
 * drawn at random instead, so every gradient of the step is non-trivial.
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { createModel, saveModel } from "../mod.ts";
import { encode, writeSafetensors } from "../internals.ts";
import { TrainProgram } from "../train/program.ts";
import { batchSampler } from "../train/data.ts";
import { upload } from "../train/trainer.ts";
import { initForTraining } from "../train/init.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string" },
    "head-kind": { type: "string", default: "transformer" },
    "own-unembedding": { type: "boolean", default: false },
    trunk: { type: "string", default: "llama" },
  },
});
const headKind = values["head-kind"];
const trunk = values.trunk;
if (
  !values.out || (headKind !== "transformer" && headKind !== "medusa") ||
  !["llama", "qwen2", "qwen3"].includes(trunk)
) {
  console.error(
    "usage: tools/train_step_dump.ts --out DIR [--head-kind transformer|medusa] " +
      "[--own-unembedding] [--trunk llama|qwen2|qwen3]",
  );
  Deno.exit(2);
}
const out = values.out;
const config = {
  vocabSize: 256,
  dModel: 64,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  dFF: 136,
  maxSeqLen: 64,
  nFuture: 3,
  tieEmbeddings: true,
  dtype: "f32" as const,
  headKind: headKind as "transformer" | "medusa",
  headsOwnUnembedding: values["own-unembedding"],
  qkvBias: trunk === "qwen2",
  oBias: trunk === "qwen2",
  qkNorm: trunk === "qwen3",
};
const B = 4, T = 32;
const optimizer = {
  schedule: { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 2, totalSteps: 10 },
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  maxNorm: 0.5,
};
const model = await createModel(config, { seed: 1 });
initForTraining(model, 7);
let seed = 11;
const small = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return (seed / 2 ** 32 - 0.5) * 0.2;
};
for (const [name, shape] of model.tensorShapes()) {
  const n = shape.reduce((x, y) => x * y, 1);
  if (/\.bias$|^medusa_head\.\d+\.0\.linear\.weight$/.test(name)) {
    model.setTensor(name, Float32Array.from({ length: n }, small));
  } else if (/[qk]_norm\.weight$/.test(name)) {
    model.setTensor(name, Float32Array.from({ length: n }, () => 1 + small()));
  }
}
await saveModel(model, join(out, "before"));
const program = new TrainProgram(model, { batch: B, seqLen: T, optimizer });
const stream = Uint32Array.from(
  new TextEncoder().encode(
    "function fib(n) {\n  return n < 2 ? n : fib(n - 1) + fib(n - 2);\n}\n".repeat(8),
  ),
);
const batch = batchSampler(stream, { batch: B, seqLen: T, nFuture: config.nFuture, seed: 3 })(0);
upload(program, batch);
const gpu = model.gpu;
const enc = gpu.device.createCommandEncoder();
for (const b of program.gradBuffers) enc.clearBuffer(b);
const pass = enc.beginComputePass();
encode(pass, program.step);
pass.end();
gpu.device.queue.submit([enc.finish()]);
const losses = Array.from(
  new Float32Array(await gpu.read(program.losses.buffer), 0, config.nFuture),
)
  .map((l) => l / (B * T));
const grads = [];
for (const p of program.params) {
  const n = p.weight.shape[0];
  grads.push({
    name: p.names[0],
    dtype: "F32" as const,
    shape: [n],
    data: new Float32Array(await gpu.read(p.grad.buffer, n * 4), 0, n),
  });
}
await writeSafetensors(join(out, "grads.safetensors"), grads);
await saveModel(model, join(out, "after"));
await Deno.writeTextFile(
  join(out, "batch.json"),
  JSON.stringify({
    batch: B,
    seqLen: T,
    ids: Array.from(batch.ids),
    targets: batch.targets.map((t) => Array.from(t)),
    optimizer,
  }),
);
await Deno.writeTextFile(join(out, "losses.json"), JSON.stringify(losses));
console.log(`losses per head: ${losses.map((l) => l.toFixed(5)).join(" ")}; wrote ${out}`);
program.dispose();
model.dispose();
