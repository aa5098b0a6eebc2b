import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  byteTokenizer,
  complete,
  createModel,
  InvalidInputError,
  loadModel,
  type Model,
} from "../mod.ts";
import { distilledStream, promptStarts } from "../train/distil.ts";
import { restoreOptimizer, saveCheckpoint } from "../train/checkpoint.ts";
import { encode } from "../kernels/dispatch.ts";
import { TrainProgram } from "../train/program.ts";
import { batchSampler, loadCorpus } from "../train/data.ts";
import { evaluate, trainSteps, upload } from "../train/trainer.ts";
import { referenceLoss, tensorsOf, trainCli, trunkFolder } from "./helpers.ts";

const TINY = {
  vocabSize: 37,
  dModel: 16,
  nLayers: 1,
  nHeads: 2,
  nKvHeads: 1,
  headDim: 8,
  dFF: 24,
  maxSeqLen: 64,
  nFuture: 2,
  dtype: "f32" as const,
};
const noStep = { schedule: { maxLr: 0, minLr: 0, warmupSteps: 0, totalSteps: 1 }, weightDecay: 0 };

// [param name, checkpoint tensor, element offset of that tensor in the param]
type GradCheck = [string, string, number];
const D = TINY.dModel;
const TRUNK_CHECKS: GradCheck[] = [
  ["model.embed_tokens.weight", "model.embed_tokens.weight", 0],
  ["model.layers.0.self_attn.qkv", "model.layers.0.self_attn.k_proj.weight", 2 * 8 * D],
  ["model.layers.0.self_attn.o_proj.weight", "model.layers.0.self_attn.o_proj.weight", 0],
  ["model.layers.0.mlp.gate_up", "model.layers.0.mlp.up_proj.weight", TINY.dFF * D],
  ["model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.down_proj.weight", 0],
  ["model.layers.0.input_layernorm.weight", "model.layers.0.input_layernorm.weight", 0],
  ["model.norm.weight", "model.norm.weight", 0],
  ["lm_head.weight", "lm_head.weight", 0],
];
const GRAD_CASES: [string, typeof TINY & Record<string, unknown>, GradCheck[]][] = [
  ["transformer heads", TINY, [
    ["mtp_heads.0.self_attn.qkv", "mtp_heads.0.self_attn.q_proj.weight", 0],
    ["mtp_heads.0.mlp.down_proj.weight", "mtp_heads.0.mlp.down_proj.weight", 0],
  ]],
  ["medusa heads, shared unembedding", { ...TINY, nFuture: 3, headKind: "medusa" }, [
    ["medusa_head.weight", "medusa_head.0.0.linear.weight", 0],
    ["medusa_head.weight", "medusa_head.1.0.linear.weight", D * D],
    ["medusa_head.bias", "medusa_head.1.0.linear.bias", D],
  ]],
  ["medusa heads, own unembeddings", {
    ...TINY,
    nFuture: 3,
    headKind: "medusa",
    headsOwnUnembedding: true,
  }, [
    ["medusa_head.weight", "medusa_head.1.0.linear.weight", D * D],
    ["medusa_head.bias", "medusa_head.0.0.linear.bias", 0],
    ["medusa_head.1.1.weight", "medusa_head.1.1.weight", 0],
  ]],
  // Qwen2's trunk (q/k/v biases; o bias as Llama's attention_bias), heads of the same kind.
  ["q/k/v and o biases", { ...TINY, qkvBias: true, oBias: true }, [
    ["model.layers.0.self_attn.qkv_bias", "model.layers.0.self_attn.q_proj.bias", 0],
    ["model.layers.0.self_attn.qkv_bias", "model.layers.0.self_attn.v_proj.bias", 2 * 8 + 8],
    ["model.layers.0.self_attn.o_proj.bias", "model.layers.0.self_attn.o_proj.bias", 0],
    ["mtp_heads.0.self_attn.qkv_bias", "mtp_heads.0.self_attn.k_proj.bias", 2 * 8],
  ]],
  // Qwen3's per-head q and k norms, before RoPE.
  ["q/k norms", { ...TINY, qkNorm: true }, [
    ["model.layers.0.self_attn.qk_norm", "model.layers.0.self_attn.q_norm.weight", 0],
    ["model.layers.0.self_attn.qk_norm", "model.layers.0.self_attn.k_norm.weight", 8],
    ["mtp_heads.0.self_attn.qk_norm", "mtp_heads.0.self_attn.k_norm.weight", 8],
    ["mtp_heads.0.self_attn.qkv", "mtp_heads.0.self_attn.k_proj.weight", 2 * 8 * D],
  ]],
];

for (const [what, config, headChecks] of GRAD_CASES) {
  Deno.test(`a training step's gradients equal finite differences of the f64 reference loss (${what})`, async () => {
    const model = await createModel(config, { seed: 3 });
    const nh = config.nFuture;
    const B = 2, T = 7;
    const program = new TrainProgram(model, { batch: B, seqLen: T, optimizer: noStep });
    try {
      const stream = Uint32Array.from({ length: 200 }, (_, i) => (i * 7 + (i >> 3)) % 37);
      const batch = batchSampler(stream, { batch: B, seqLen: T, nFuture: nh, seed: 5 })(0);
      upload(program, batch);
      const gpu = model.gpu;
      const enc = gpu.device.createCommandEncoder();
      for (const b of program.gradBuffers) enc.clearBuffer(b);
      const pass = enc.beginComputePass();
      encode(pass, program.step);
      pass.end();
      gpu.device.queue.submit([enc.finish()]);
      const seqs = [0, 1].map((b) => Array.from(batch.ids.subarray(b * T, (b + 1) * T)));
      const targets = [0, 1].map((b) =>
        batch.targets.map((t) => Array.from(t.subarray(b * T, (b + 1) * T)))
      );
      const tensors = tensorsOf(model, 3);
      // The GPU's losses are the reference's.
      const losses = new Float32Array(await gpu.read(program.losses.buffer), 0, nh);
      const ref = referenceLoss(model, tensors, seqs, targets);
      const total = losses.reduce((x, y) => x + y, 0) / (B * T);
      assert.ok(Math.abs(total - ref) < 1e-5 * ref, `loss ${total}, reference ${ref}`);
      const d = TINY.dModel;
      for (const [param, name, offset] of [...TRUNK_CHECKS, ...headChecks]) {
        const p = program.params.find((x) => x.names[0] === param);
        assert.ok(p, `no parameter ${param}`);
        const grad = new Float32Array(await gpu.read(p.grad.buffer, p.weight.shape[0] * 4));
        const w = tensors.get(name)!;
        // Three entries of the tensor, spread over it (the first ids of the batch for the embedding).
        const idx = name === "model.embed_tokens.weight"
          ? [batch.ids[0] * d + 1, batch.ids[3] * d + 5]
          : [1, Math.floor(w.length / 2) + 3, w.length - 2];
        for (const i of idx) {
          const h = 1e-3;
          const keep = w[i];
          w[i] = keep + h;
          const up = referenceLoss(model, tensors, seqs, targets);
          w[i] = keep - h;
          const down = referenceLoss(model, tensors, seqs, targets);
          w[i] = keep;
          const fd = (up - down) / (2 * h);
          // The tensor starts `offset` elements into the fused parameter.
          const got = grad[offset + i];
          assert.ok(
            Math.abs(got - fd) <= 2e-3 * Math.abs(fd) + 2e-5,
            `${name}[${i}]: gradient ${got}, finite difference ${fd}`,
          );
        }
      }
    } finally {
      program.dispose();
      model.dispose();
    }
  });
}

for (const kind of ["transformer", "medusa"] as const) {
  Deno.test(`a tiny model overfits a short text to near-zero loss, every head (${kind} heads)`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const text =
        "function add(a, b) {\n  return a + b;\n}\n// the quick brown fox jumps over the lazy dog\n";
      await Deno.writeTextFile(`${dir}/a.js`, text.repeat(3));
      await Deno.writeTextFile(`${dir}/b.js`, text);
      const tok = byteTokenizer();
      const corpus = await loadCorpus(tok, { train: [`${dir}/a.js`], heldout: [`${dir}/b.js`] });
      const model = await createModel({
        ...TINY,
        vocabSize: 256,
        dModel: 32,
        nHeads: 4,
        nKvHeads: 2,
        dFF: 64,
        nFuture: 3,
        headKind: kind,
        headsOwnUnembedding: kind === "medusa",
      }, { seed: 1 });
      const o = { batch: 4, seqLen: 32, nFuture: 3, seed: 1 };
      const program = new TrainProgram(model, {
        batch: o.batch,
        seqLen: o.seqLen,
        optimizer: {
          schedule: { maxLr: 1e-2, minLr: 1e-3, warmupSteps: 10, totalSteps: 300 },
          maxNorm: 1,
        },
      });
      try {
        const batchAt = batchSampler(corpus.train, o);
        const logs: number[][] = [];
        const r = await trainSteps(program, {
          from: 0,
          to: 300,
          batchAt,
          logEvery: 25,
          onLog: (l) => logs.push(l.losses),
        });
        assert.equal(r.stopped, "done");
        assert.equal(r.step, 300);
        const first = logs[0], last = logs[logs.length - 1];
        for (let j = 0; j < 3; j++) {
          assert.ok(
            last[j] < 0.1,
            `head ${j + 1}: loss ${last[j]} after 300 steps (first ${first[j]})`,
          );
          assert.ok(first[j] > 2, `head ${j + 1} started at ${first[j]}`);
        }
        const held = await evaluate(program, [batchAt(7)]);
        assert.ok(held.every((l) => l < 0.2), `losses ${held}`);
      } finally {
        program.dispose();
        model.dispose();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("heads-only training (trainTrunk: false) leaves every trunk tensor bit-identical and teaches the heads", async () => {
  const text = "const answer = compute(41) + 1;\nexport default answer;\n".repeat(8);
  const stream = new TextEncoder().encode(text);
  const o = { batch: 4, seqLen: 24, nFuture: 3, seed: 2 };
  const model = await createModel({ ...TINY, vocabSize: 256, dModel: 32, nFuture: 3 }, {
    seed: 3,
  });
  const before = new Map<string, Uint8Array>();
  for (const [name] of model.tensorShapes()) {
    before.set(name, (await model.getTensor(name)).bytes.slice());
  }
  const program = new TrainProgram(model, {
    batch: o.batch,
    seqLen: o.seqLen,
    trainTrunk: false,
    optimizer: {
      schedule: { maxLr: 1e-2, minLr: 1e-3, warmupSteps: 5, totalSteps: 120 },
      maxNorm: 1,
    },
  });
  try {
    const batchAt = batchSampler(Uint32Array.from(stream), o);
    const probe = [batchAt(1000)];
    const start = await evaluate(program, probe);
    const r = await trainSteps(program, { from: 0, to: 120, batchAt, logEvery: 40 });
    assert.equal(r.stopped, "done");
    const end = await evaluate(program, probe);
    // Head 1 is the trunk's own next-token prediction: frozen, so its loss does not move.
    assert.ok(Math.abs(end[0] - start[0]) < 1e-4, `head 1: ${start[0]} -> ${end[0]}`);
    for (const j of [1, 2]) {
      assert.ok(end[j] < start[j] - 0.5, `head ${j + 1}: ${start[j]} -> ${end[j]}`);
    }
    for (const [name] of model.tensorShapes()) {
      const same = Buffer.compare(
        Buffer.from((await model.getTensor(name)).bytes),
        Buffer.from(before.get(name)!),
      ) === 0;
      if (name.startsWith("mtp_heads.")) assert.ok(!same, `${name} did not change`);
      else assert.ok(same, `${name} changed, though the trunk is frozen`);
    }
  } finally {
    program.dispose();
    model.dispose();
  }
});

Deno.test("self-distillation data: real prompts, each continued by the model's own greedy tokens", async () => {
  const model = await createModel({ ...TINY, vocabSize: 256, dModel: 32, nFuture: 2 }, {
    seed: 5,
  });
  try {
    const source = Uint32Array.from({ length: 300 }, (_, i) => 32 + ((i * 7) % 90));
    const o = { samples: 3, promptLen: 5, tokens: 7, seed: 11, separator: 0 };
    const progress: number[] = [];
    const cont = async (p: number[]) =>
      (await complete(model, p, { maxTokens: o.tokens, ignoreEos: true })).tokens;
    const stream = await distilledStream(
      source,
      { ...o, onProgress: (d) => progress.push(d) },
      cont,
    );
    assert.deepEqual(progress, [1, 2, 3]);
    assert.equal(stream.length, 3 * (5 + 7 + 1));
    const starts = promptStarts(source.length, o);
    assert.equal(new Set(starts).size, 3, `starts ${starts}`);
    for (const [i, s] of starts.entries()) {
      const sample = Array.from(stream.subarray(i * 13, (i + 1) * 13));
      const prompt = Array.from(source.subarray(s, s + 5));
      assert.deepEqual(sample.slice(0, 5), prompt);
      assert.deepEqual(sample.slice(5, 12), await cont(prompt), `sample ${i}`);
      assert.equal(sample[12], 0);
    }
    assert.deepEqual(await distilledStream(source, o, cont), stream, "seeded: the same again");
    await assert.rejects(
      () => distilledStream(source.subarray(0, 4), o, cont),
      InvalidInputError,
    );
    await assert.rejects(
      () => distilledStream(source, { ...o, samples: 0 }, cont),
      /samples must be an integer >= 1/,
    );
  } finally {
    model.dispose();
  }
});

Deno.test("a learning rate that makes the loss explode stops training at a NaN without applying it", async () => {
  const model = await createModel({ ...TINY, nFuture: 1 }, { seed: 2 });
  const program = new TrainProgram(model, {
    batch: 2,
    seqLen: 8,
    optimizer: { schedule: { maxLr: 1e30, minLr: 1e30, warmupSteps: 0, totalSteps: 50 } },
  });
  try {
    const stream = Uint32Array.from({ length: 100 }, (_, i) => i % 37);
    let saved = 0;
    const r = await trainSteps(program, {
      from: 0,
      to: 50,
      batchAt: batchSampler(stream, { batch: 2, seqLen: 8, nFuture: 1, seed: 1 }),
      logEvery: 5,
      onCheckpoint: () => {
        saved++;
        return Promise.resolve();
      },
      checkpointEvery: 5,
    });
    assert.equal(r.stopped, "nan");
    assert.ok(r.step < 50);
    // Checkpoints written before the explosion are kept; none is written after it.
    assert.ok(saved <= Math.floor(r.step / 5));
  } finally {
    program.dispose();
    model.dispose();
  }
});

Deno.test("training refuses empty data, data shorter than a sequence, and unsupported models", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.txt`, "");
    await Deno.writeTextFile(`${dir}/b.txt`, "hi");
    await assert.rejects(
      () => loadCorpus(byteTokenizer(), { train: [`${dir}/a.txt`], heldout: [`${dir}/b.txt`] }),
      /the training files \(.*a\.txt\) are empty: give text to train on/,
    );
    assert.throws(
      () => batchSampler(Uint32Array.of(1, 2, 3), { batch: 1, seqLen: 8, nFuture: 2, seed: 0 }),
      (e: unknown) =>
        e instanceof InvalidInputError && /shorter than one training sequence/.test(e.message),
    );
    await assert.rejects(
      () => loadCorpus(byteTokenizer(), { train: [`${dir}/none`] }),
      /does not exist/,
    );
    const f16 = await createModel({ ...TINY, dtype: "f16" });
    try {
      assert.throws(
        () => new TrainProgram(f16, { batch: 1, seqLen: 4, optimizer: noStep }),
        /training does not support dtype "f16"/,
      );
    } finally {
      f16.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resuming from a checkpoint continues exactly where the run stopped (same bits as one run)", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = { ...TINY, nFuture: 2 };
  const optimizer = {
    schedule: { maxLr: 3e-3, minLr: 3e-4, warmupSteps: 3, totalSteps: 16 },
    maxNorm: 1,
  };
  const stream = Uint32Array.from({ length: 400 }, (_, i) => (i * 11 + (i >> 2)) % 37);
  const batchAt = batchSampler(stream, { batch: 2, seqLen: 8, nFuture: 2, seed: 4 });
  const run = async (model: Model, from: number, to: number, save?: string) => {
    const program = new TrainProgram(model, { batch: 2, seqLen: 8, optimizer });
    try {
      if (from > 0) await restoreOptimizer(program, dir, { tokenizer: "test" });
      await trainSteps(program, {
        from,
        to,
        batchAt,
        logEvery: 4,
        onCheckpoint: save
          ? (step) => saveCheckpoint(program, save, { step, tokenizer: "test" })
          : undefined,
      });
    } finally {
      program.dispose();
    }
  };
  try {
    const straight = await createModel(cfg, { seed: 9 });
    const first = await createModel(cfg, { seed: 9 });
    await run(straight, 0, 16);
    await run(first, 0, 8, dir);
    first.dispose();
    const resumed = await loadModel(dir, { dtype: "f32" });
    try {
      await run(resumed, 8, 16);
      for (const [name] of straight.tensorShapes()) {
        assert.deepEqual(
          (await resumed.getTensor(name)).bytes,
          (await straight.getTensor(name)).bytes,
          name,
        );
      }
      await assert.rejects(
        () =>
          restoreOptimizer(new TrainProgram(resumed, { batch: 2, seqLen: 8, optimizer }), dir, {
            tokenizer: "other",
          }),
        /trained with tokenizer test, resuming with other/,
      );
    } finally {
      straight.dispose();
      resumed.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task train --heads-only --distil on a Hugging Face folder with a BPE tokenizer, then --resume", async () => {
  const dir = await Deno.makeTempDir();
  const fixture = new URL("./fixtures/", import.meta.url).pathname;
  try {
    const hf = await trunkFolder(dir, { tokenizer: false });
    await Deno.writeTextFile(
      `${dir}/a.js`,
      "export function twice(x) {\n  return 2 * x;\n}\n".repeat(20),
    );
    // Without tokenizer.json a 648-id model's text cannot be encoded: a clear error.
    const common = ["--data", `${dir}/a.js`, "--heldout", `${dir}/a.js`, "--model", hf];
    const small = [
      "--seq-len",
      "24",
      "--batch",
      "2",
      "--log-every",
      "2",
      "--checkpoint-every",
      "2",
    ];
    const noTok = await trainCli(
      ...common,
      "--heads-only",
      "--out",
      `${dir}/x`,
      "--steps",
      "2",
      ...small,
    );
    assert.equal(noTok.code, 1, noTok.err);
    assert.match(noTok.err, /no tokenizer\.json and 648 ids/);
    const notHeadsOnly = await trainCli(...common, "--distil", "3", "--out", `${dir}/x`);
    assert.equal(notHeadsOnly.code, 2);
    assert.match(notHeadsOnly.err, /--distil needs --heads-only/);
    await assertMissing(`${dir}/x`);

    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${fixture}tokenizers/byte_level_bpe/${f}`, `${hf}/${f}`);
    }
    const out = `${dir}/heads`;
    const args = ["--heads-only", "--heads", "3", "--distil", "3", "--distil-prompt", "6"];
    const r = await trainCli(...common, ...args, "--out", out, "--steps", "4", ...small);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /self-distillation: 3\/3 continuations/);
    // 3 samples of 6 prompt tokens, 18 generated (seq-len minus the prompt) and a separator.
    assert.match(r.err, /self-distillation: 75 tokens to train the heads on/);
    const run = JSON.parse(await Deno.readTextFile(`${out}/run.json`));
    assert.deepEqual(run.distil, { samples: 3, promptLen: 6, tokens: 18, seed: 0 });
    const resumed = await trainCli("--resume", out, "--steps", "6");
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.err, /steps 4\.\.6/);
    const base = await loadModel(hf);
    const trained = await loadModel(out);
    try {
      assert.ok(trained.tokenizer, "the tokenizer travels with the checkpoint");
      assert.equal(trained.config.nFuture, 3);
      for (const [name] of base.tensorShapes()) {
        assert.deepEqual(
          (await trained.getTensor(name)).bytes,
          (await base.getTensor(name)).bytes,
          `${name}: the trunk is frozen`,
        );
      }
    } finally {
      base.dispose();
      trained.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task train --heads-only --head-kind medusa --own-unembedding: Medusa-1 heads on a frozen trunk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const hf = await trunkFolder(dir, { tokenizer: true });
    await Deno.writeTextFile(
      `${dir}/a.js`,
      "let total = 0;\nfor (const x of xs) total += x;\n".repeat(20),
    );
    const args = ["--data", `${dir}/a.js`, "--heldout", `${dir}/a.js`, "--model", hf];
    args.push("--heads-only", "--heads", "3");
    const small = ["--seq-len", "24", "--batch", "2", "--steps", "4", "--log-every", "2"];
    const bad = await trainCli(...args, "--own-unembedding", "--out", `${dir}/x`, ...small);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--own-unembedding is for --head-kind medusa/);
    const out = `${dir}/medusa`;
    const r = await trainCli(
      ...args,
      "--head-kind",
      "medusa",
      "--own-unembedding",
      "--out",
      out,
      ...small,
    );
    assert.equal(r.code, 0, r.err);
    const base = await loadModel(hf);
    const trained = await loadModel(out);
    try {
      assert.equal(trained.config.headKind, "medusa");
      assert.equal(trained.config.headsOwnUnembedding, true);
      for (const [name] of base.tensorShapes()) {
        assert.deepEqual(
          (await trained.getTensor(name)).bytes,
          (await base.getTensor(name)).bytes,
          `${name}: the trunk is frozen`,
        );
      }
      // Each head's unembedding started as a copy of lm_head and learned from there.
      const lm = new Float32Array((await base.getTensor("lm_head.weight")).bytes.slice().buffer);
      for (const j of [0, 1]) {
        const own = new Float32Array(
          (await trained.getTensor(`medusa_head.${j}.1.weight`)).bytes.slice().buffer,
        );
        let moved = 0, diff = 0;
        for (let i = 0; i < lm.length; i++) {
          diff = Math.max(diff, Math.abs(own[i] - lm[i]));
          if (own[i] !== lm[i]) moved++;
        }
        assert.ok(
          moved > 0 && diff < 0.05,
          `head ${j + 2}: ${moved} entries moved, by up to ${diff}`,
        );
      }
    } finally {
      base.dispose();
      trained.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function assertMissing(path: string) {
  await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound, `${path} exists`);
}
