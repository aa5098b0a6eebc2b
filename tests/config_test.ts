import assert from "node:assert/strict";
import { ConfigError, countParameters, createModel, parseConfig } from "../mod.ts";
import { tiny } from "./helpers.ts";

const bad: [string, Record<string, unknown>, RegExp][] = [
  ["vocabSize below range", { vocabSize: 1 }, /vocabSize must be in \[2, 1048576\]/],
  ["dModel not a multiple of 8", { dModel: 20 }, /dModel must be a multiple of 8/],
  ["nLayers zero", { nLayers: 0 }, /nLayers must be in \[1, 256\]/],
  ["nKvHeads not dividing nHeads", { nKvHeads: 2 }, /nKvHeads \(2\) must divide nHeads \(3\)/],
  ["headDim not a multiple of 4", { headDim: 6 }, /headDim must be a multiple of 4/],
  ["headDim over 256", { dModel: 1040, nHeads: 2, headDim: undefined }, /headDim \(520\)/],
  [
    "nFuture over 8 (the most rows a verify block holds)",
    { nFuture: 9 },
    /nFuture must be in \[1, 8\], got 9/,
  ],
  [
    "unknown headKind",
    { headKind: "tree" },
    /headKind must be "transformer", "medusa" or "sequential", got the string "tree"/,
  ],
  ["non-integer maxSeqLen", { maxSeqLen: 10.5 }, /maxSeqLen must be an integer/],
  ["negative ropeTheta", { ropeTheta: -1 }, /ropeTheta must be > 0/],
  ["unknown field", { nExperts: 8 }, /unknown field\(s\) nExperts/],
  ["missing field", { dFF: undefined }, /dFF is required/],
  [
    "a string where a number belongs",
    { vocabSize: "5" },
    /vocabSize must be an integer, got the string "5"/,
  ],
  [
    "an unknown dtype",
    { dtype: "q3" },
    /dtype must be "f32", "f16", "q8" or "q4", got the string "q3"/,
  ],
];

for (const [what, change, message] of bad) {
  Deno.test(`parseConfig() rejects ${what} with a message naming the field`, () => {
    assert.throws(() => parseConfig({ ...tiny(), ...change }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, message);
      return true;
    });
  });
}

Deno.test("parseConfig() fills defaults and derived sizes", () => {
  const c = parseConfig({
    vocabSize: 100,
    dModel: 64,
    nLayers: 2,
    nHeads: 4,
    dFF: 128,
    maxSeqLen: 32,
  });
  assert.deepEqual(
    [
      c.nKvHeads,
      c.headDim,
      c.nFuture,
      c.headKind,
      c.ropeTheta,
      c.normEps,
      c.dtype,
      c.tieEmbeddings,
    ],
    [4, 16, 4, "transformer", 10000, 1e-5, "f32", false],
  );
});

Deno.test("createModel() rejects a bad config before touching the GPU", async () => {
  await assert.rejects(() => createModel({ ...tiny(), nHeads: 0 }), ConfigError);
});

Deno.test("countParameters() counts the 1.1B benchmark model", () => {
  const c = parseConfig({
    vocabSize: 32000,
    dModel: 2048,
    nLayers: 16,
    nHeads: 32,
    nKvHeads: 8,
    dFF: 8192,
    maxSeqLen: 2048,
    nFuture: 1,
  });
  // 2 * 32000 * 2048 embeddings + 16 * (2048 * 3072 + 2048 * 2048 + 3 * 2048 * 8192 + 2 * 2048) + 2048
  assert.equal(countParameters(c), 1_104_218_112);
});
