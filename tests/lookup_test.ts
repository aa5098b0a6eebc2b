// Prompt-lookup drafts (speculative edits): the kernel against the CPU reference, the output
// against greedy decoding for lookup alone and combined with the heads, and bad n-gram sizes.
import assert from "node:assert/strict";
import { complete, createModel, headsAndLookup, InvalidInputError, lookupDrafts } from "../mod.ts";
import { run } from "../kernels/dispatch.ts";
import { NO_TOKEN, S } from "../kernels/state.ts";
import { lookup } from "../decode/lookup.ts";
import { lookupRef } from "../decode/reference.ts";
import { randomTokens, readU32, rng, stateTensor, testArena, tiny, u32 } from "./helpers.ts";

Deno.test("lookup() proposes what followed the latest earlier occurrence of the last n-gram, as the CPU reference", async () => {
  const a = await testArena();
  const r = rng(3);
  let found = 0;
  for (let c = 0; c < 60; c++) {
    // Short sequences over few ids: matches of every length occur, and misses too.
    const len = 2 + Math.floor(r(0, 600));
    const seq = randomTokens(len, c % 3 === 0 ? 40 : 4, 100 + c);
    const k = 2 + (c % 7), maxN = 1 + (c % 4), minN = 1 + (c % maxN);
    for (const keep of [false, true]) {
      const ids = u32(a, [seq[len - 1], ...new Array(k - 1).fill(77)]);
      run(
        a.gpu,
        lookup(a, {
          state: stateTensor(a, { [S.LEN]: len }),
          tokens: u32(a, [...seq, 5, 5, 5]),
          ids,
          k,
          maxN,
          minN,
          keepUnlessFound: keep,
        }),
        "t",
      );
      const got = Array.from(await readU32(a, ids, k)).slice(1);
      const want = lookupRef(seq, k, maxN, minN);
      if (want) found++;
      assert.deepEqual(
        got,
        want ?? new Array(k - 1).fill(keep ? 77 : NO_TOKEN),
        `case ${c}, len ${len}, k ${k}, n ${maxN}..${minN}, keep ${keep}`,
      );
    }
  }
  assert.ok(found > 40 && found < 120, `${found} of 120 lookups matched`);
});

Deno.test("speculative decoding with lookup drafts, alone and with the heads, equals greedy; repeated text runs ahead", async () => {
  const model = await createModel(tiny({ vocabSize: 11, nFuture: 3 }), { seed: 4 });
  try {
    let faster = 0;
    for (let i = 0; i < 6; i++) {
      const base = randomTokens(5 + i, 11, 500 + i);
      const prompt = [...base, ...base, ...base.slice(0, 2)]; // the text repeats
      const greedy = await complete(model, prompt, { maxTokens: 30 });
      for (
        const [name, drafts, blockSize] of [
          ["lookup", lookupDrafts(), 8],
          ["lookup, 2-grams", lookupDrafts({ ngram: 2, minNgram: 2 }), 5],
          ["heads + lookup", headsAndLookup(), 3],
        ] as const
      ) {
        const s = await complete(model, prompt, {
          maxTokens: 30,
          mode: "speculative",
          drafts,
          blockSize,
        });
        assert.deepEqual(s.tokens, greedy.tokens, `${name}, prompt ${i}`);
        if (name === "lookup" && s.stats.tokensPerStep > 1.5) faster++;
      }
    }
    assert.ok(faster >= 2, `lookup ran ahead on only ${faster} of 6 prompts`);
  } finally {
    model.dispose();
  }
});

Deno.test("lookup n-gram sizes below 1 or inverted are refused with an InvalidInputError", () => {
  for (const o of [{ ngram: 0 }, { ngram: 2.5 }, { ngram: 2, minNgram: 3 }, { minNgram: 0 }]) {
    assert.throws(() => lookupDrafts(o), InvalidInputError, JSON.stringify(o));
    assert.throws(() => headsAndLookup(o), InvalidInputError, JSON.stringify(o));
  }
});

Deno.test("examples/edit.ts: every draft source writes the greedy output of the edit prompt; bad changes are refused", async () => {
  const { speculativeEdit } = await import("../examples/edit.ts");
  const model = await createModel(
    { vocabSize: 256, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 400, nFuture: 3 },
    { seed: 1 },
  );
  try {
    const text = "let a = 1;\nlet b = a + 2;\nconsole.log(a, b);\n";
    const r = await speculativeEdit(model, text, { rename: "a=x" }, { block: 6 });
    assert.deepEqual(r.runs.map((x) => x.drafts), [
      "greedy",
      "heads",
      "prompt lookup",
      "heads + lookup",
    ]);
    assert.equal(r.expected, "let b = x + 2;\nconsole.log(x, b);\n");
    for (const run of r.runs) assert.ok(run.tokensPerStep >= 1, run.drafts);
    await assert.rejects(() => speculativeEdit(model, text, { rename: "zz=y" }), InvalidInputError);
    await assert.rejects(() => speculativeEdit(model, text, { insert: "9:x" }), InvalidInputError);
    await assert.rejects(() => speculativeEdit(model, text, { insert: "x" }), InvalidInputError);
  } finally {
    model.dispose();
  }
});
