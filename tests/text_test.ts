import assert from "node:assert/strict";
import {
  byteTokenizer,
  complete,
  createModel,
  generate,
  InvalidInputError,
  loadTokenizer,
  type Model,
  preset,
  TokenizerError,
} from "../mod.ts";

const fixtures = new URL("./fixtures/tokenizers/", import.meta.url);

async function byteModel(f: (m: Model) => Promise<void>, nFuture = 3) {
  const model = await createModel(preset("demo", { maxSeqLen: 160, nFuture }), { seed: 8 });
  model.tokenizer = byteTokenizer();
  try {
    await f(model);
  } finally {
    model.dispose();
  }
}

Deno.test("a string prompt is encoded; text chunks never split a character and concatenate to decode(ids)", async () => {
  await byteModel(async (model) => {
    for (const mode of ["greedy", "speculative"] as const) {
      const chunks: { ids: number[]; text?: string }[] = [];
      for await (const c of generate(model, "héllo wörld ", { maxTokens: 90, mode })) {
        chunks.push(c);
      }
      const ids = chunks.flatMap((c) => c.ids);
      assert.equal(ids.length, 90);
      assert.ok(
        chunks.every((c) => typeof c.text === "string" && !c.text.includes("\uFFFD") || ids.length),
      );
      assert.equal(chunks.map((c) => c.text).join(""), model.tokenizer!.decode(ids));
      const done = await complete(model, "héllo wörld ", { maxTokens: 90, mode });
      assert.deepEqual(done.tokens, ids);
      assert.equal(done.text, model.tokenizer!.decode(ids));
    }
    // The prompt's ids are the tokenizer's: the same as passing them directly.
    const viaIds = await complete(model, Array.from(new TextEncoder().encode("héllo wörld ")), {
      maxTokens: 30,
    });
    assert.deepEqual(
      (await complete(model, "héllo wörld ", { maxTokens: 30 })).tokens,
      viaIds.tokens,
    );
  });
});

Deno.test("a stop string ends the text right after its first occurrence, across tokens", async () => {
  await byteModel(async (model) => {
    const free = await complete(model, "abc", { maxTokens: 120 });
    const text = free.text!;
    // A three-character stop taken from the middle of the free text: several byte tokens long.
    const stop = text.slice(40, 43);
    const first = text.indexOf(stop);
    for (const mode of ["greedy", "speculative"] as const) {
      const r = await complete(model, "abc", { maxTokens: 120, stop: [stop], mode });
      assert.equal(r.text, text.slice(0, first + stop.length), mode);
      assert.deepEqual(r.tokens, free.tokens.slice(0, r.tokens.length));
      assert.equal(model.tokenizer!.decode(r.tokens), r.text);
    }
  });
});

Deno.test("a one-token stop string is checked on the GPU like its id; EOS ids stop by default", async () => {
  await byteModel(async (model) => {
    const free = await complete(model, [7, 8], { maxTokens: 100 });
    const i = free.tokens.findIndex((t, j) =>
      t < 128 && t > 31 && !free.tokens.slice(0, j).includes(t)
    );
    assert.ok(i >= 0, "an ASCII token in the free run");
    const ch = String.fromCharCode(free.tokens[i]);
    const byString = await complete(model, [7, 8], { maxTokens: 100, stop: [ch] });
    const byId = await complete(model, [7, 8], { maxTokens: 100, stop: [free.tokens[i]] });
    assert.deepEqual(byString.tokens, free.tokens.slice(0, i + 1));
    assert.deepEqual(byId.tokens, byString.tokens);
    model.eosIds = [free.tokens[i]];
    assert.deepEqual((await complete(model, [7, 8], { maxTokens: 100 })).tokens, byId.tokens);
    assert.deepEqual(
      (await complete(model, [7, 8], { maxTokens: 100, ignoreEos: true })).tokens,
      free.tokens,
    );
  });
});

Deno.test("chat messages go through the tokenizer's chat template", async () => {
  const tokenizer = await loadTokenizer(new URL("tiny/", fixtures));
  const model = await createModel(
    preset("tiny-odd", { vocabSize: tokenizer.vocabSize, maxSeqLen: 96 }),
    { seed: 1 },
  );
  model.tokenizer = tokenizer;
  try {
    const messages = [{ role: "user", content: "hello world" }];
    const rendered = "<s>[INST] hello world [/INST]";
    const ids = tokenizer.encode(rendered, { addSpecialTokens: false });
    const viaChat = await complete(model, messages, { maxTokens: 10 });
    const viaIds = await complete(model, ids, { maxTokens: 10 });
    assert.deepEqual(viaChat.tokens, viaIds.tokens);
    assert.equal(viaChat.text, tokenizer.decode(viaChat.tokens));
    await assert.rejects(
      () => complete(model, [{ role: "assistant", content: "x" }], { maxTokens: 2 }),
      (e: unknown) => e instanceof TokenizerError && /roles must alternate/.test(e.message),
    );
    model.tokenizer = await loadTokenizer(new URL("unigram/", fixtures));
    await assert.rejects(
      () => complete(model, messages, { maxTokens: 2 }),
      (e: unknown) =>
        e instanceof TokenizerError &&
        /has no chat template: pass a plain string prompt/.test(e.message),
    );
  } finally {
    model.dispose();
  }
});

Deno.test("text needs a tokenizer, and the tokenizer's ids must fit the model", async () => {
  const model = await createModel(preset("tiny-odd"), { seed: 1 });
  try {
    await assert.rejects(() => complete(model, "hi", { maxTokens: 2 }), (e: unknown) => {
      assert.ok(e instanceof InvalidInputError);
      assert.match(e.message, /a string prompt needs a tokenizer: load the model with loadModel/);
      return true;
    });
    await assert.rejects(
      () => complete(model, [1], { maxTokens: 2, stop: ["\n\n"] }),
      /stop\[0\] = the string "\\n\\n" needs a tokenizer/,
    );
    // A byte tokenizer on a 67-id model: "z" is byte 122.
    await assert.rejects(
      () => complete(model, "z", { maxTokens: 2, tokenizer: byteTokenizer() }),
      (e: unknown) => {
        assert.ok(e instanceof TokenizerError);
        assert.match(e.message, /token id 122 \(at index 0\) is outside the vocabulary of 67 ids/);
        return true;
      },
    );
  } finally {
    model.dispose();
  }
});
