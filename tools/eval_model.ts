/**
 * Measures a trained byte-level multi-token model on held-out code, for its model card:
 * - held-out loss of each head in bits per byte (head 1's is the model's compression rate);
 * - the teacher-forced top-1 accuracy of each head against the real text;
 * - per draft slot, how often draft j was accepted given draft j - 1 was, pooled over prompts;
 * - generating from prompts cut out of the held-out files: tokens per step and tokens/s of
 *   speculative decoding against greedy (the output is identical), and the share of repeated
 *   text in the generations (so that a degenerate loop cannot pass for good heads);
 * - three sample generations.
 *
 *     deno run -A --unstable-webgpu tools/eval_model.ts --model DIR --heldout DIR [--window 512]
 *       [--prompts 50] [--tokens 256] [--dtype f32|f16|q8|q4] [--temperature T] [--json FILE]
 *
 * --temperature also samples at T (seeded per prompt), plain and speculative (lossless
 * speculative sampling with the heads' drafts): tokens/step and tokens/s of each.
 *
 * --dtype loads the weights in that storage type (q8 and q4 quantize them as they load), to
 * measure what quantization costs in held-out loss and gains in speed.
 * Prompts (96 bytes) plus generated tokens stay within --window, the training sequence length.
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { byteTokenizer, complete, forward, loadModel } from "../mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    heldout: { type: "string" },
    prompts: { type: "string", default: "50" },
    tokens: { type: "string", default: "256" },
    window: { type: "string", default: "512" },
    dtype: { type: "string" },
    temperature: { type: "string" },
    json: { type: "string" },
  },
});
if (!values.model || !values.heldout) {
  console.error(
    "usage: tools/eval_model.ts --model DIR --heldout DIR [--prompts 50] [--tokens 256] [--json FILE]",
  );
  Deno.exit(2);
}
const dtypes = ["f32", "f16", "q8", "q4"] as const;
const dtype = values.dtype as typeof dtypes[number] | undefined;
if (dtype !== undefined && !dtypes.includes(dtype)) {
  console.error(`--dtype must be one of ${dtypes.join(", ")}, got ${values.dtype}`);
  Deno.exit(2);
}
const model = await loadModel(values.model, { maxSeqLen: 1024, dtype, onWarning: () => {} });
model.tokenizer = byteTokenizer();
model.eosIds = [0];
const c = model.config;
const files: string[] = [];
for await (const e of Deno.readDir(values.heldout)) {
  if (e.isFile) files.push(join(values.heldout, e.name));
}
files.sort();
const texts = await Promise.all(files.map((f) => Deno.readTextFile(f)));
const enc = new TextEncoder();

// Teacher-forced loss and accuracy per head over windows of the held-out bytes.
// Windows as long as the training sequences: positions past them were never trained.
const window = Number(values.window);
const nh = c.nFuture;
const nll = new Array(nh).fill(0), hits = new Array(nh).fill(0), counts = new Array(nh).fill(0);
let windows = 0;
for (const t of texts) {
  const bytes = Array.from(enc.encode(t));
  for (let s = 0; s + window + nh <= bytes.length && windows < 200; s += window) {
    // nh - 1 bytes past the window: sequential MTP modules read the true token t+k at row t
    // (the window's rows see nothing later: attention is causal).
    const ids = bytes.slice(s, s + window + nh - 1);
    const heads = await forward(model, ids);
    for (let j = 0; j < nh; j++) {
      const l = heads[j];
      for (let r = 0; r < window; r++) {
        const target = bytes[s + r + j + 1];
        const row = l.subarray(r * c.vocabSize, (r + 1) * c.vocabSize);
        let max = -Infinity, arg = 0;
        for (let v = 0; v < row.length; v++) if (row[v] > max) [max, arg] = [row[v], v];
        let sum = 0;
        for (const x of row) sum += Math.exp(x - max);
        nll[j] += max + Math.log(sum) - row[target];
        hits[j] += arg === target ? 1 : 0;
        counts[j]++;
      }
    }
    windows++;
  }
}
const bitsPerByte = nll.map((x, j) => x / counts[j] / Math.LN2);
const accuracy = hits.map((h, j) => h / counts[j]);

// Generation from prompts: the first 96 bytes of spread-out positions of the held-out files.
const prompts: number[][] = [];
const nPrompts = Number(values.prompts);
for (let i = 0; prompts.length < nPrompts && i < nPrompts * 10; i++) {
  const t = enc.encode(texts[i % texts.length]);
  const at = Math.floor(((i * 7919) % 97) / 97 * Math.max(0, t.length - 200));
  if (t.length >= 200) prompts.push(Array.from(t.subarray(at, at + 96)));
}
const maxTokens = Number(values.tokens);
const runs = {
  greedy: { tokens: 0, steps: 0, seconds: 0 },
  speculative: { tokens: 0, steps: 0, seconds: 0 },
};
let identical = true;
const proposed: number[] = [], acceptedDrafts: number[] = [];
let repeated = 0, generated = 0;
const samples: string[] = [];
await complete(model, prompts[0], { maxTokens: 16 }); // compile pipelines
await complete(model, prompts[0], { maxTokens: 16, mode: "speculative" });
for (const p of prompts) {
  const g = await complete(model, p, { maxTokens, ignoreEos: true });
  const s = await complete(model, p, { maxTokens, ignoreEos: true, mode: "speculative" });
  identical &&= g.tokens.join() === s.tokens.join();
  s.stats.draftCounts.proposed.forEach((n, j) => proposed[j] = (proposed[j] ?? 0) + n);
  s.stats.draftCounts.accepted.forEach((n, j) => acceptedDrafts[j] = (acceptedDrafts[j] ?? 0) + n);
  for (const [k, r] of [["greedy", g], ["speculative", s]] as const) {
    runs[k].tokens += r.stats.tokens;
    runs[k].steps += r.stats.steps;
    runs[k].seconds += r.stats.decodeSeconds;
  }
  // Repeated text: bytes of the generation inside an 8-gram seen earlier in prompt + generation.
  const seq = [...p, ...g.tokens];
  const seen = new Set<string>();
  for (let i = 8; i <= seq.length; i++) {
    const key = seq.slice(i - 8, i).join(",");
    if (i > p.length && seen.has(key)) repeated++;
    seen.add(key);
  }
  generated += g.tokens.length;
  if (samples.length < 3) {
    samples.push(new TextDecoder().decode(Uint8Array.from(p)) + "⟪" + g.text + "⟫");
  }
}
// Sampling at --temperature: plain against speculative, the same seeds.
const temperature = values.temperature === undefined ? null : Number(values.temperature);
const sampled = {
  plain: { tokens: 0, steps: 0, seconds: 0 },
  speculative: { tokens: 0, steps: 0, seconds: 0 },
};
if (temperature !== null) {
  for (const [i, p] of prompts.entries()) {
    for (const mode of ["greedy", "speculative"] as const) {
      const r = await complete(model, p, {
        maxTokens,
        ignoreEos: true,
        temperature,
        seed: i,
        mode,
      });
      const k = mode === "greedy" ? "plain" : "speculative";
      sampled[k].tokens += r.stats.tokens;
      sampled[k].steps += r.stats.steps;
      sampled[k].seconds += r.stats.decodeSeconds;
    }
  }
}
const perSecond = (x: { tokens: number; seconds: number }) => x.tokens / x.seconds;
const result = {
  model: values.model,
  adapter: model.adapterName,
  config: c,
  heldoutFiles: files.length,
  heldoutWindows: windows,
  bitsPerByte,
  accuracy,
  prompts: prompts.length,
  maxTokens,
  greedy: { ...runs.greedy, tokensPerSecond: runs.greedy.tokens / runs.greedy.seconds },
  speculative: {
    ...runs.speculative,
    tokensPerSecond: runs.speculative.tokens / runs.speculative.seconds,
    tokensPerStep: runs.speculative.tokens / runs.speculative.steps,
  },
  // draft j accepted given draft j - 1 was (draft 1: of those proposed), pooled
  draftAcceptance: acceptedDrafts.map((a, j) =>
    a / (j === 0 ? proposed[0] : acceptedDrafts[j - 1]) || 0
  ),
  meanAcceptedLength: acceptedDrafts.reduce((x, y) => x + y, 0) / runs.speculative.steps,
  speedup: (runs.speculative.tokens / runs.speculative.seconds) /
    (runs.greedy.tokens / runs.greedy.seconds),
  identicalToGreedy: identical,
  ...(temperature === null ? {} : {
    sampling: {
      temperature,
      plain: { ...sampled.plain, tokensPerSecond: perSecond(sampled.plain) },
      speculative: {
        ...sampled.speculative,
        tokensPerSecond: perSecond(sampled.speculative),
        tokensPerStep: sampled.speculative.tokens / sampled.speculative.steps,
      },
      speedup: perSecond(sampled.speculative) / perSecond(sampled.plain),
    },
  }),
  repeatedShare: repeated / generated,
  samples,
};
model.dispose();
console.log(JSON.stringify(result, null, 2));
if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(result, null, 2) + "\n");
