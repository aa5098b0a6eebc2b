import assert from "node:assert/strict";
import {
  AbortedError,
  complete,
  createModel,
  generate,
  InvalidInputError,
  type Model,
  ModelStateError,
} from "../mod.ts";
import { MAP_LAG, MIN_BATCH_STEPS } from "../decode/readback.ts";
import { referenceGreedy } from "../heads/reference.ts";
import { randomTokens, tensorsOf, tiny } from "./helpers.ts";

async function withModel(f: (m: Model) => Promise<void>, config = tiny()) {
  const model = await createModel(config, { seed: 11 });
  try {
    await f(model);
  } finally {
    model.dispose();
  }
}

/** The first index i where tokens[i] does not occur before i, with i >= from. */
function firstFresh(tokens: number[], from: number): number {
  for (let i = from; i < tokens.length; i++) if (!tokens.slice(0, i).includes(tokens[i])) return i;
  throw new Error("no fresh token");
}

Deno.test("greedy generation matches the CPU reference model token for token", async () => {
  await withModel(async (model) => {
    const tensors = tensorsOf(model, 11);
    for (const prompt of [[5], randomTokens(13, 67, 1)]) {
      const { tokens, stats } = await complete(model, prompt, { maxTokens: 12 });
      assert.deepEqual(tokens, referenceGreedy(model.config, tensors, prompt, 12));
      assert.equal(stats.steps, 12);
      assert.equal(stats.tokensPerStep, 1);
      assert.deepEqual(stats.headAcceptance, [1, 0, 0]);
    }
  });
});

Deno.test("generate() streams chunks whose concatenation is the completion, with few host syncs", async () => {
  await withModel(async (model) => {
    const chunks: number[][] = [];
    for await (const chunk of generate(model, [1, 2, 3], { maxTokens: 60 })) chunks.push(chunk.ids);
    assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
    const { tokens, stats } = await complete(model, [1, 2, 3], { maxTokens: 60 });
    assert.deepEqual(chunks.flat(), tokens);
    assert.equal(tokens.length, 60);
    // Steps go in batches of at least MIN_BATCH_STEPS: never one sync per step (+1 for the prefill, + MAP_LAG batches in flight when done lands).
    assert.ok(
      stats.hostSyncs <= Math.ceil(stats.steps / MIN_BATCH_STEPS) + MAP_LAG + 1,
      `${stats.hostSyncs} host syncs for ${stats.steps} steps`,
    );
    assert.ok(stats.tokensPerSecond > 0 && stats.dispatchesPerStep > 10);
  });
});

Deno.test("a stop id ends generation right after it is emitted", async () => {
  await withModel(async (model) => {
    const { tokens: free } = await complete(model, [4, 4], { maxTokens: 30 });
    const i = firstFresh(free, 3);
    const { tokens } = await complete(model, [4, 4], { maxTokens: 30, stop: [free[i], 66] });
    assert.deepEqual(tokens, free.slice(0, i + 1));
  });
});

Deno.test("generation stops at maxSeqLen exactly", async () => {
  await withModel(async (model) => {
    const prompt = randomTokens(90, 67, 2);
    const { tokens, stats } = await complete(model, prompt, { maxTokens: 100 });
    assert.equal(tokens.length, 96 - 90);
    assert.equal(stats.steps, 6);
    const { tokens: five } = await complete(model, prompt, { maxTokens: 5 });
    assert.deepEqual(tokens.slice(0, 5), five);
  });
});

Deno.test("bad input gets a clear error", async () => {
  await withModel(async (model) => {
    const cases: [unknown[], Record<string, unknown>, RegExp][] = [
      [[], {}, /prompt must be a non-empty array of token ids, a string or chat messages/],
      [new Array(96).fill(1), {}, /prompt has 96 tokens but maxSeqLen is 96/],
      [[1, 67], {}, /prompt\[1\] = 67 is not a token id: ids must be integers in \[0, 67\)/],
      [[1, -1], {}, /prompt\[1\] = -1/],
      [[1.5], {}, /prompt\[0\] = 1.5/],
      [[1], { maxTokens: 0 }, /maxTokens must be an integer >= 1, got 0/],
      [[1], { maxTokens: "5" }, /maxTokens must be an integer >= 1, got the string "5"/],
      [[1, "2"], {}, /prompt\[1\] = the string "2" is not a token id/],
      [[1], { blockSize: 9 }, /blockSize must be an integer in \[1, 8\], got 9/],
      [[1], { stop: [70] }, /stop\[0\] = 70 is not a token id/],
      [[1], { mode: "beam" }, /mode must be "greedy" or "speculative"/],
      [[1], { signal: AbortSignal.abort() }, /aborted before generation started/],
    ];
    for (const [prompt, options, message] of cases) {
      await assert.rejects(
        () => complete(model, prompt as number[], { maxTokens: 4, ...options }),
        (e: unknown) => {
          assert.ok(e instanceof InvalidInputError || e instanceof AbortedError, String(e));
          assert.match((e as Error).message, message);
          return true;
        },
      );
    }
  });
});

for (const mode of ["greedy", "speculative"] as const) {
  Deno.test(`aborting mid-stream (${mode}) stops cleanly and frees the generation's buffers`, async () => {
    await withModel(async (model) => {
      const before = model.liveBuffers;
      const ctl = new AbortController();
      const got: number[] = [];
      await assert.rejects(async () => {
        for await (
          const chunk of generate(model, [1, 2], { maxTokens: 80, signal: ctl.signal, mode })
        ) {
          got.push(...chunk.ids);
          ctl.abort();
        }
      }, AbortedError);
      assert.ok(got.length >= 1 && got.length < 80);
      assert.equal(model.liveBuffers, before);
      // The model is usable again afterwards.
      assert.equal((await complete(model, [1, 2], { maxTokens: 3, mode })).tokens.length, 3);
    });
  });
}

Deno.test("breaking out of the stream frees buffers; a second concurrent generation is refused", async () => {
  await withModel(async (model) => {
    const before = model.liveBuffers;
    const it = generate(model, [3], { maxTokens: 40 });
    await it.next();
    await assert.rejects(() => complete(model, [3], { maxTokens: 2 }), ModelStateError);
    await it.return(undefined as never);
    assert.equal(model.liveBuffers, before);
  });
});
