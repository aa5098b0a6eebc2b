import assert from "node:assert/strict";
import {
  complete,
  createModel,
  generate,
  type Model,
  type ModelConfigInput,
  replayDrafts,
} from "../mod.ts";
import { ALL_FEATURES, randomTokens, rng, tiny } from "./helpers.ts";
import { MAP_LAG, MIN_BATCH_STEPS } from "../decode/readback.ts";

const SEED = 5;

/** Greedy continuations of the trunk; trunk weights depend only on the seed, not on the heads. */
async function greedyOf(
  vocabSize: number,
  cases: { prompt: number[]; maxTokens: number }[],
  features: Partial<ModelConfigInput> = {},
) {
  const m = await createModel(tiny({ ...features, vocabSize, nFuture: 1 }), { seed: SEED });
  try {
    const out: number[][] = [];
    for (const c of cases) {
      out.push((await complete(m, c.prompt, { maxTokens: c.maxTokens })).tokens);
    }
    return out;
  } finally {
    m.dispose();
  }
}

Deno.test("speculative == greedy token for token: 50 prompts x heads 2..8 x both head kinds", async () => {
  // A small vocabulary, so random heads are sometimes right and both accept and reject paths run.
  const vocabSize = 7;
  const r = rng(1);
  const cases = Array.from({ length: 50 }, (_, i) => ({
    prompt: randomTokens(1 + Math.floor(r(0, 12)), vocabSize, 1000 + i),
    maxTokens: 4 + Math.floor(r(0, 20)),
  }));
  const greedy = await greedyOf(vocabSize, cases);
  let accepted = 0, steps = 0, tokens = 0;
  for (const headKind of ["transformer", "medusa"] as const) {
    for (let nFuture = 2; nFuture <= 8; nFuture++) {
      const model = await createModel(tiny({ vocabSize, nFuture, headKind }), { seed: SEED });
      try {
        for (let i = 0; i < cases.length; i++) {
          const { tokens: t, stats } = await complete(model, cases[i].prompt, {
            maxTokens: cases[i].maxTokens,
            mode: "speculative",
          });
          assert.deepEqual(t, greedy[i], `${headKind}, nFuture ${nFuture}, prompt ${i}`);
          assert.equal(stats.headAcceptance.length, nFuture);
          accepted += stats.tokens - stats.steps;
          steps += stats.steps;
          tokens += stats.tokens;
        }
      } finally {
        model.dispose();
      }
    }
  }
  assert.ok(accepted > 100, `only ${accepted} drafts accepted: the accept path is barely tested`);
  assert.ok(tokens > steps, "speculative decoding never emitted more than one token per step");
});

Deno.test("speculative == greedy token for token with every Hugging Face trunk feature on, every head kind", async () => {
  const vocabSize = 7;
  const r = rng(2);
  const cases = Array.from({ length: 8 }, (_, i) => ({
    prompt: randomTokens(1 + Math.floor(r(0, 12)), vocabSize, 2000 + i), // > 8 rows: tiled prefill
    maxTokens: 4 + Math.floor(r(0, 20)),
  }));
  const greedy = await greedyOf(vocabSize, cases, ALL_FEATURES);
  let accepted = 0;
  const kinds = [
    ["transformer", false],
    ["medusa", false],
    ["medusa", true],
    ["sequential", false],
  ] as const;
  for (const [headKind, headsOwnUnembedding] of kinds) {
    for (const nFuture of [3, 5]) {
      const config = tiny({ ...ALL_FEATURES, vocabSize, nFuture, headKind, headsOwnUnembedding });
      const model = await createModel(config, { seed: SEED });
      try {
        for (let i = 0; i < cases.length; i++) {
          const { tokens, stats } = await complete(model, cases[i].prompt, {
            maxTokens: cases[i].maxTokens,
            mode: "speculative",
          });
          const what = `${headKind}${headsOwnUnembedding ? " (own unembedding)" : ""}`;
          assert.deepEqual(tokens, greedy[i], `${what}, nFuture ${nFuture}, prompt ${i}`);
          accepted += stats.tokens - stats.steps;
        }
      } finally {
        model.dispose();
      }
    }
  }
  assert.ok(accepted > 10, `only ${accepted} drafts accepted: the accept path is barely tested`);
});

async function withModel(nFuture: number, f: (m: Model, greedy: number[]) => Promise<void>) {
  const model = await createModel(tiny({ nFuture, headKind: "medusa" }), { seed: SEED });
  try {
    const { tokens } = await complete(model, [9, 8, 7], { maxTokens: 40 });
    await f(model, tokens);
  } finally {
    model.dispose();
  }
}

for (const nFuture of [2, 4, 5]) {
  Deno.test(`replaying the true continuation gives nFuture (${nFuture}) tokens per step; a wrong one gives 1`, async () => {
    await withModel(nFuture, async (model, greedy) => {
      const right = await complete(model, [9, 8, 7], {
        maxTokens: 40,
        mode: "speculative",
        drafts: replayDrafts(greedy),
      });
      assert.deepEqual(right.tokens, greedy);
      assert.equal(right.stats.steps, Math.ceil(40 / nFuture));
      assert.deepEqual(right.stats.headAcceptance, new Array(nFuture).fill(1));
      if (40 % nFuture === 0) assert.equal(right.stats.tokensPerStep, nFuture);

      const wrong = await complete(model, [9, 8, 7], {
        maxTokens: 40,
        mode: "speculative",
        drafts: replayDrafts(greedy.map((t) => (t + 1) % 67)),
      });
      assert.deepEqual(wrong.tokens, greedy);
      assert.equal(wrong.stats.tokensPerStep, 1);
      assert.deepEqual(wrong.stats.headAcceptance, [1, ...new Array(nFuture - 1).fill(0)]);
    });
  });
}

Deno.test("a stop id inside an accepted block ends generation exactly where greedy would", async () => {
  await withModel(4, async (model, greedy) => {
    for (const at of [5, 6, 9]) { // positions inside a 4-token block
      if (greedy.slice(0, at).includes(greedy[at])) continue;
      const stop = [greedy[at]];
      const g = await complete(model, [9, 8, 7], { maxTokens: 40, stop });
      const s = await complete(model, [9, 8, 7], {
        maxTokens: 40,
        stop,
        mode: "speculative",
        drafts: replayDrafts(greedy),
      });
      assert.deepEqual(g.tokens, greedy.slice(0, at + 1));
      assert.deepEqual(s.tokens, g.tokens);
      assert.equal(s.stats.steps, Math.floor(at / 4) + 1);
    }
  });
});

Deno.test("maxTokens reached inside a block yields exactly maxTokens tokens", async () => {
  await withModel(4, async (model, greedy) => {
    for (const maxTokens of [1, 6, 9]) {
      const s = await complete(model, [9, 8, 7], {
        maxTokens,
        mode: "speculative",
        drafts: replayDrafts(greedy),
      });
      assert.deepEqual(s.tokens, greedy.slice(0, maxTokens));
    }
  });
});

Deno.test("speculative generation runs up to maxSeqLen exactly", async () => {
  await withModel(5, async (model) => {
    const prompt = randomTokens(83, 67, 3);
    const g = await complete(model, prompt, { maxTokens: 50 });
    assert.equal(g.tokens.length, 96 - 83);
    const s = await complete(model, prompt, {
      maxTokens: 50,
      mode: "speculative",
      drafts: replayDrafts(g.tokens),
    });
    assert.deepEqual(s.tokens, g.tokens);
    const h = await complete(model, prompt, { maxTokens: 50, mode: "speculative" });
    assert.deepEqual(h.tokens, g.tokens);
  });
});

Deno.test("speculative generation with sequential MTP modules runs up to maxSeqLen exactly, 7 drafts a step", async () => {
  // The modules' catch-up and drafts reach the last positions the caches hold.
  const model = await createModel(tiny({ nFuture: 3, headKind: "sequential", mtpDepth: 7 }), {
    seed: SEED,
  });
  try {
    for (const n of [83, 94]) {
      const prompt = randomTokens(n, 67, n);
      const g = await complete(model, prompt, { maxTokens: 50 });
      assert.equal(g.tokens.length, 96 - n);
      const s = await complete(model, prompt, { maxTokens: 50, mode: "speculative" });
      assert.deepEqual(s.tokens, g.tokens);
      assert.equal(s.stats.draftAcceptance.length, 7);
    }
  } finally {
    model.dispose();
  }
});

Deno.test("speculative streaming: chunks concatenate to the greedy output, host syncs stay few", async () => {
  await withModel(3, async (model, greedy) => {
    const chunks: number[][] = [];
    const it = generate(model, [9, 8, 7], { maxTokens: 40, mode: "speculative" });
    let r = await it.next();
    while (!r.done) {
      chunks.push(r.value.ids);
      r = await it.next();
    }
    assert.deepEqual(chunks.flat(), greedy);
    assert.ok(
      r.value.hostSyncs <= Math.ceil(r.value.steps / MIN_BATCH_STEPS) + MAP_LAG + 1,
      `${r.value.hostSyncs} host syncs for ${r.value.steps} steps`,
    );
  });
});
