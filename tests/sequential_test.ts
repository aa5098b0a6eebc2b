import assert from "node:assert/strict";
import { complete, createModel, forward, loadModel, type ModelConfigInput } from "../mod.ts";
import { referenceForward } from "../heads/reference.ts";
import { relativeError } from "../kernels/reference.ts";
import {
  ALL_FEATURES,
  randomTokens,
  readU32,
  referenceLoss,
  rng,
  tensorsOf,
  tiny,
  trainCli,
  trunkFolder,
} from "./helpers.ts";
import { headDraftSource } from "../decode/drafts.ts";
import { Session } from "../decode/session.ts";
import { S } from "../kernels/state.ts";
import { encode } from "../kernels/dispatch.ts";
import { mtpNames } from "../heads/sequential.ts";
import { TrainProgram } from "../train/program.ts";
import { batchSampler } from "../train/data.ts";
import { upload } from "../train/trainer.ts";

const tolerance = (c: { kvDtype: string }) => c.kvDtype === "f16" ? 2e-3 : 1e-4;

/** forward() against the CPU reference: head k + 1 has n - k teacher-forced rows. */
async function checkForward(config: ModelConfigInput) {
  const model = await createModel(config, { seed: 11 });
  try {
    const tensors = tensorsOf(model, 11);
    const v = model.config.vocabSize;
    for (const len of [1, 2, 7, 21]) { // 21 > 8 rows: the tiled path
      const tokens = randomTokens(len, v, 30 + len);
      const gpu = await forward(model, tokens);
      const ref = referenceForward(model.config, tensors, tokens);
      assert.equal(gpu.length, model.config.nFuture);
      for (let h = 0; h < ref.length; h++) {
        assert.equal(gpu[h].length, Math.max(0, len - h) * v, `head ${h + 1} rows`);
        assert.equal(ref[h].length, gpu[h].length, `reference head ${h + 1} rows`);
        if (gpu[h].length === 0) continue;
        const err = relativeError(gpu[h], ref[h]);
        assert.ok(err < tolerance(model.config), `head ${h + 1}, ${len} tokens: error ${err}`);
      }
    }
  } finally {
    model.dispose();
  }
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`forward() matches the CPU reference: sequential MTP modules, MiMo layout, ${dtype}`, () =>
    checkForward(tiny({ headKind: "sequential", nFuture: 4, dtype })));
}
Deno.test("forward() matches the CPU reference: sequential MTP modules, DeepSeek layout, own head, every trunk feature", () =>
  checkForward(
    tiny({
      ...ALL_FEATURES,
      headKind: "sequential",
      mtpLayout: "deepseek",
      headsOwnUnembedding: true,
      nFuture: 3,
    }),
  ));

/** argmax of row `r` of logits [rows, v], with the gap to the runner-up. */
function top(logits: Float32Array, r: number, v: number): { id: number; gap: number } {
  const row = logits.subarray(r * v, (r + 1) * v);
  let id = 0;
  for (let j = 1; j < v; j++) if (row[j] > row[id]) id = j;
  let second = -Infinity;
  for (let j = 0; j < v; j++) if (j !== id) second = Math.max(second, row[j]);
  return { id, gap: row[id] - second };
}

for (const layout of ["mimo", "deepseek"] as const) {
  Deno.test(`decoding keeps the MTP modules' caches exact: each step's drafts are the teacher-forced picks (${layout})`, async () => {
    // Two modules, three drafts a step: draft 1 from module 1 at the last accepted row, draft 2
    // from module 2 over draft 1, draft 3 from module 2 again.
    const config = tiny({ headKind: "sequential", nFuture: 3, mtpDepth: 3, mtpLayout: layout });
    const model = await createModel(config, { seed: 3 });
    try {
      const v = model.config.vocabSize;
      const prompt = randomTokens(11, v, 77); // > 8 rows: a tiled prefill chunk
      const steps = 12;
      const session = new Session(model, { k: 4, drafts: headDraftSource(), promptLength: 11 });
      session.start(prompt, { limit: 11 + 40, stop: [] });
      const slot = session.readback();
      let checked = 0;
      for (let i = 0; i < steps; i++) {
        model.gpu.device.queue.submit([session.encodeSteps(1, slot)]);
        const ids = Array.from(await readU32(session.ctx.arena, session.ids, 4));
        const state = await readU32(session.ctx.arena, session.state, S.WORDS);
        const tokens = await readU32(session.ctx.arena, session.tokens, state[S.LEN]);
        const seq = Array.from(tokens);
        const p = seq.length - 2; // the last accepted position; seq[p + 1] = ids[0]
        assert.equal(ids[0], seq[p + 1]);
        // Draft 1: module 1 at p, teacher-forced over the sequence.
        const [, m1] = await forward(model, seq);
        const d1 = top(m1, p, v);
        if (d1.gap > 1e-4) assert.equal(ids[1], d1.id, `step ${i}: draft 1`), checked++;
        // Draft 2: module 2 at p reads t_{p+2}, which is draft 1.
        const [, , m2] = await forward(model, [...seq, ids[1]]);
        const d2 = top(m2, p, v);
        if (d2.gap > 1e-4) assert.equal(ids[2], d2.id, `step ${i}: draft 2`), checked++;
        assert.ok(ids[3] < v, `step ${i}: draft 3 is ${ids[3]}`);
      }
      assert.ok(checked >= steps, `only ${checked} drafts were clear enough to check`);
      session.dispose();
    } finally {
      model.dispose();
    }
  });
}

Deno.test("speculative == greedy token for token with sequential MTP modules: 1 and 3 modules, 1-7 drafts, both layouts", async () => {
  // Three ids, so that random modules are right often enough to run the accept paths.
  const vocabSize = 3;
  const r = rng(4);
  const cases = Array.from({ length: 8 }, (_, i) => ({
    prompt: randomTokens(1 + Math.floor(r(0, 12)), vocabSize, 3000 + i),
    maxTokens: 4 + Math.floor(r(0, 20)),
  }));
  const base = await createModel(tiny({ vocabSize, nFuture: 1 }), { seed: 5 });
  const greedy: number[][] = [];
  try {
    for (const c of cases) greedy.push((await complete(base, c.prompt, c)).tokens);
  } finally {
    base.dispose();
  }
  let accepted = 0;
  const runs = [["mimo", 2, [3, 8]], ["deepseek", 4, [2, 5]]] as const;
  for (const [mtpLayout, nFuture, blockSizes] of runs) {
    {
      const model = await createModel(
        tiny({ vocabSize, nFuture, headKind: "sequential", mtpLayout }),
        { seed: 5 },
      );
      try {
        for (const blockSize of blockSizes) {
          for (let i = 0; i < cases.length; i++) {
            const { tokens, stats } = await complete(model, cases[i].prompt, {
              maxTokens: cases[i].maxTokens,
              mode: "speculative",
              blockSize,
            });
            const what = `${mtpLayout}, ${nFuture - 1} modules, ${
              blockSize - 1
            } drafts, prompt ${i}`;
            assert.deepEqual(tokens, greedy[i], what);
            assert.equal(stats.draftAcceptance.length, blockSize - 1, what);
            assert.ok(stats.draftAcceptance.every((x) => x >= 0 && x <= 1), what);
            const drafted = stats.meanAcceptedLength * stats.steps;
            assert.ok(Math.abs(drafted - Math.round(drafted)) < 1e-9, what);
            assert.ok(drafted >= stats.tokens - stats.steps, what);
            assert.ok(stats.draftDispatchesPerStep > 10 * (blockSize - 1), what);
            accepted += stats.tokens - stats.steps;
          }
        }
      } finally {
        model.dispose();
      }
    }
  }
  assert.ok(accepted > 40, `only ${accepted} drafts accepted: the accept path is barely tested`);
});

Deno.test("sequential MTP modules: the trunk matches a model without them", async () => {
  // The trunk's weights depend only on the seed: the same greedy output with and without modules.
  const prompt = [1, 2, 3, 4, 5];
  const a = await createModel(tiny({ nFuture: 1 }), { seed: 9 });
  const b = await createModel(tiny({ nFuture: 3, headKind: "sequential" }), { seed: 9 });
  try {
    const ga = await complete(a, prompt, { maxTokens: 12 });
    const gb = await complete(b, prompt, { maxTokens: 12, mode: "speculative" });
    assert.deepEqual(gb.tokens, ga.tokens);
    assert.equal(gb.stats.dispatchesPerStep > ga.stats.dispatchesPerStep, true);
  } finally {
    a.dispose();
    b.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// Training sequential modules on a frozen trunk

const TRAIN_TINY = {
  vocabSize: 37,
  dModel: 16,
  nLayers: 1,
  nHeads: 2,
  nKvHeads: 1,
  headDim: 8,
  dFF: 24,
  maxSeqLen: 64,
  nFuture: 3,
  headKind: "sequential",
  dtype: "f32" as const,
};

for (const mtpLayout of ["mimo", "deepseek"] as const) {
  Deno.test(`training sequential MTP modules: gradients equal finite differences of the f64 reference loss (${mtpLayout})`, async () => {
    const config = { ...TRAIN_TINY, mtpLayout, qkvBias: true };
    const model = await createModel(config, { seed: 3 });
    const B = 2, T = 7, nh = config.nFuture;
    const noStep = {
      schedule: { maxLr: 0, minLr: 0, warmupSteps: 0, totalSteps: 1 },
      weightDecay: 0,
    };
    const program = new TrainProgram(model, {
      batch: B,
      seqLen: T,
      trainTrunk: false,
      optimizer: noStep,
    });
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
      const losses = new Float32Array(await gpu.read(program.losses.buffer), 0, nh);
      const ref = referenceLoss(model, tensors, seqs, targets);
      const total = losses.reduce((x, y) => x + y, 0) / (B * T);
      assert.ok(Math.abs(total - ref) < 1e-5 * ref, `loss ${total}, reference ${ref}`);
      // Only the modules learn.
      assert.ok(program.params.every((p) => !p.names[0].startsWith("model.embed")));
      const names = (i: number) => mtpNames(model.config, i);
      const checks: [string, string, number][] = [
        [names(0).inputProj, names(0).inputProj, 0],
        [names(1).inputProj, names(1).inputProj, 0],
        [names(0).hiddenNorm, names(0).hiddenNorm, 0],
        [names(1).tokenNorm, names(1).tokenNorm, 0],
        [names(0).finalNorm, names(0).finalNorm, 0], // MiMo: module 2 reads through it too
        [`${names(0).prefix}.mlp.down_proj.weight`, `${names(0).prefix}.mlp.down_proj.weight`, 0],
        [
          `${names(1).prefix}.self_attn.qkv`,
          `${names(1).prefix}.self_attn.k_proj.weight`,
          2 * 8 * 16,
        ],
      ];
      for (const [param, name, offset] of checks) {
        const p = program.params.find((x) => x.names[0] === param);
        assert.ok(p, `no parameter ${param}`);
        const grad = new Float32Array(await gpu.read(p.grad.buffer, p.weight.shape[0] * 4));
        const w = tensors.get(name)!;
        for (const i of [1, Math.floor(w.length / 2) + 3, w.length - 2]) {
          const h = 1e-3, keep = w[i];
          w[i] = keep + h;
          const up = referenceLoss(model, tensors, seqs, targets);
          w[i] = keep - h;
          const down = referenceLoss(model, tensors, seqs, targets);
          w[i] = keep;
          const fd = (up - down) / (2 * h);
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

Deno.test("deno task train --heads-only --head-kind sequential: MTP modules learn on a frozen trunk, then draft", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const hf = await trunkFolder(dir, { tokenizer: true });
    // A short period: the distilled prompts cut from it are few, so 100 steps learn the trunk's
    // continuations of each.
    const text = "x+=1;".repeat(200);
    await Deno.writeTextFile(`${dir}/a.js`, text);
    const args = ["--data", `${dir}/a.js`, "--heldout", `${dir}/a.js`, "--model", hf];
    const small = ["--seq-len", "24", "--batch", "4", "--steps", "100", "--log-every", "10"];
    const refused = await trainCli(
      ...args,
      "--head-kind",
      "sequential",
      "--out",
      `${dir}/x`,
      ...small,
    );
    assert.equal(refused.code, 2);
    assert.match(refused.err, /--head-kind sequential trains MTP modules on a frozen trunk/);
    const out = `${dir}/mtp`;
    const r = await trainCli(
      ...args,
      ...["--heads-only", "--heads", "3", "--head-kind", "sequential", "--mtp-layout", "deepseek"],
      // Self-distilled: the modules learn what this (random) trunk itself generates.
      ...["--distil", "24", "--distil-prompt", "8", "--lr", "3e-3", "--warmup", "5", "--out", out],
      ...small,
    );
    assert.equal(r.code, 0, r.err);
    const base = await loadModel(hf);
    const trained = await loadModel(out, { onWarning: () => {} });
    try {
      assert.equal(trained.config.headKind, "sequential");
      assert.equal(trained.config.mtpLayout, "deepseek");
      for (const [name] of base.tensorShapes()) {
        assert.deepEqual(
          (await trained.getTensor(name)).bytes,
          (await base.getTensor(name)).bytes,
          `${name}: the trunk is frozen`,
        );
      }
      // The modules learned the repeated text: their losses fell.
      const log = JSON.parse(await Deno.readTextFile(`${out}/run.json`));
      const steps = (log.history as { train: number[] }[]).filter((h) => h.train.length);
      for (const j of [1, 2]) {
        const first = steps[0].train[j], last = steps[steps.length - 1].train[j];
        assert.ok(last < 0.5 * first, `head ${j + 1}: loss ${first} -> ${last}`);
      }
      // They draft what the trunk generates: speculative decoding accepts, and equals greedy.
      const prompt = trained.tokenizer!.encode(text, { addSpecialTokens: false }).slice(0, 8);
      const g = await complete(trained, prompt, { maxTokens: 16 });
      const s = await complete(trained, prompt, { maxTokens: 16, mode: "speculative" });
      assert.deepEqual(s.tokens, g.tokens);
      assert.ok(s.stats.tokensPerStep > 1.8, `tokens/step ${s.stats.tokensPerStep}`);
    } finally {
      base.dispose();
      trained.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
