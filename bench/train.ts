/**
 * Training throughput, in one run (`deno task bench --train`):
 * - the GPU's f32 FMA peak, measured with a kernel of its own (bench/peak.ts);
 * - a training step of the default model's shape (ms per step, training tokens/s), timed with
 *   GPU timestamps over a block of steps;
 * - every launch of one step timed alone: the matrix products' TFLOP/s as a % of that peak.
 *
 *     deno task bench --train [--json FILE] [--quick]
 *
 * bench/torch_train.py trains the same model on the same batch shape in PyTorch f32 (TF32 off)
 * for the ratio. --quick uses a tiny model, for a software GPU.
 * @module
 */
import { parseArgs } from "node:util";
import { createModel } from "../mod.ts";
import { createGpu, encode } from "../internals.ts";
import { TrainProgram } from "../train/program.ts";
import { batchSampler } from "../train/data.ts";
import { upload } from "../train/trainer.ts";
import { initForTraining } from "../train/init.ts";
import { fmaPeak } from "./peak.ts";
import { timePasses } from "./timing.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "string" },
    quick: { type: "boolean", default: false },
    train: { type: "boolean", default: false },
  },
});
const quick = args.quick;
// The default model's run (models/ahead-code): 6 layers, d256, 4 heads, batch 32 x 512.
const config = quick
  ? { vocabSize: 256, dModel: 32, nLayers: 1, nHeads: 2, nKvHeads: 1, dFF: 64, nFuture: 2 }
  : { vocabSize: 256, dModel: 256, nLayers: 6, nHeads: 4, nKvHeads: 2, dFF: 768, nFuture: 4 };
const batch = quick ? 2 : 32, seqLen = quick ? 16 : 512;

const gpu = await createGpu();
if (!gpu.hasTimestamps) {
  console.error("this GPU has no timestamp-query: the benchmark needs it");
  Deno.exit(1);
}
const fma = await fmaPeak(gpu, { quick });
console.log(`GPU: ${gpu.adapterName}; f32 FMA peak (measured) ${fma.peak.toFixed(2)} TFLOP/s`);
const model = await createModel(
  { ...config, maxSeqLen: seqLen, tieEmbeddings: true, dtype: "f32" },
  { device: gpu.device },
);
initForTraining(model, 1);
const program = new TrainProgram(model, {
  batch,
  seqLen,
  optimizer: { schedule: { maxLr: 1e-4, minLr: 1e-5, warmupSteps: 1, totalSteps: 1000 } },
});
const rows = batch * seqLen;
const stream = Uint32Array.from({ length: 100_000 }, (_, i) => (i * 2654435761 >>> 24) & 255);
upload(program, batchSampler(stream, { batch, seqLen, nFuture: config.nFuture, seed: 1 })(0));

// A block of steps, each in its own timed pass (the gradients are not cleared between them:
// the work and its time are the same).
const steps = quick ? 3 : 20;
fma.burn(300);
const block = await timePasses(gpu, steps, (pass) => encode(pass, program.step));
const msPerStep = block.medianNs / 1e6;
const tokensPerSecond = rows / (msPerStep / 1000);

// Each launch alone, repeated: the time of the matrix products.
const reps = quick ? 1 : 5;
const times = new Map<string, number>();
fma.burn(300);
for (const d of program.step) {
  const t = await timePasses(gpu, 1, (pass) => {
    for (let r = 0; r < reps; r++) encode(pass, [d]);
  });
  const kind = /proj|lm_head/.test(d.label)
    ? "matrix products"
    : /attention/.test(d.label)
    ? "attention"
    : /adamw|grad_norm/.test(d.label)
    ? "optimizer"
    : "other";
  times.set(kind, (times.get(kind) ?? 0) + t.ns[0] / reps / 1e6);
}
// FLOPs of the matrix products in a step: 2 per multiply-add, forward once, dX and dW in the
// backward; every Linear of the trunk and the heads, and the unembedding once per head.
const c = model.config;
const perLayer = c.dModel * ((c.nHeads + 2 * c.nKvHeads) * c.headDim) +
  c.nHeads * c.headDim * c.dModel +
  3 * c.dModel * c.dFF;
const layers = c.nLayers + c.nFuture - 1;
const matmulFlops = 2 * rows * 3 * (layers * perLayer + c.nFuture * c.vocabSize * c.dModel);
const matmulMs = times.get("matrix products") ?? 0;
const matmulTflops = matmulFlops / (matmulMs / 1000) / 1e12;
const result = {
  adapter: gpu.adapterName,
  fmaPeakTflops: fma.peak,
  config,
  batch,
  seqLen,
  msPerStep,
  tokensPerSecond,
  msByKind: Object.fromEntries(times),
  matmulTflops,
  matmulPctOfPeak: 100 * matmulTflops / fma.peak,
  stepTflops: matmulFlops / (msPerStep / 1000) / 1e12,
};
console.log(
  `training step, ${c.nLayers} layers d${c.dModel} + ${
    c.nFuture - 1
  } head layers, batch ${batch} x ${seqLen}: ` +
    `${msPerStep.toFixed(2)} ms, ${(tokensPerSecond / 1000).toFixed(1)}k tokens/s`,
);
console.log(
  `matrix products: ${matmulMs.toFixed(2)} ms of launches, ${matmulTflops.toFixed(2)} TFLOP/s = ` +
    `${result.matmulPctOfPeak.toFixed(1)}% of the measured FMA peak`,
);
console.log(
  `time by kind (launches timed alone): ${
    [...times].map(([k, v]) => `${k} ${v.toFixed(2)} ms`).join(", ")
  }`,
);
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(result, null, 2) + "\n");
program.dispose();
model.dispose();
fma.dispose();
gpu.dispose();
