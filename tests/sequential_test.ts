import assert from "node:assert/strict";
import { complete, createModel, forward, type ModelConfigInput } from "../mod.ts";
import { referenceForward } from "../heads/reference.ts";
import { relativeError } from "../kernels/reference.ts";
import { ALL_FEATURES, randomTokens, readU32, rng, tensorsOf, tiny } from "./helpers.ts";
import { headDraftSource } from "../decode/drafts.ts";
import { Session } from "../decode/session.ts";
import { S } from "../kernels/state.ts";

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
