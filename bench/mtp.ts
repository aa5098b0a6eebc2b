/**
 * Sequential MTP module benchmark: on a MiMo-7B-shaped random model (Qwen2 trunk, d 4096, 36
 * layers, 32/8 heads, FFN 11008, vocab 151680, one MTP module) in f16 and q8, and on the small
 * shape with one module, in one run:
 * - greedy tokens/s;
 * - the replay ceiling at 1-3 drafts a step (the true continuation as drafts, no module);
 * - the module's real cost: the module runs every step (catch-up and drafting) but its drafts are
 *   replaced by the true continuation, all right or every 30th wrong (about vLLM's 96.6%
 *   acceptance), so the table shows what the module costs at a given acceptance;
 * - speculative with the module's own (random, so rarely right) drafts, with its statistics;
 * - the draft cost: ms/step with the module minus without it, at the same block and acceptance.
 *
 *     deno run -A --unstable-webgpu bench/mtp.ts [--json FILE] [--quick] [--tokens N] [--only RE]
 * @module
 */
import { parseArgs } from "node:util";
import {
  allocateModel,
  complete,
  type DraftSource,
  type GenerationStats,
  type Model,
  type ModelConfigInput,
  replayDrafts,
} from "../mod.ts";
import { createGpu } from "../internals.ts";
import { headDraftSource } from "../decode/drafts.ts";
import { preset } from "../model/presets.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "string" },
    quick: { type: "boolean", default: false },
    tokens: { type: "string", default: "512" },
    only: { type: "string" },
  },
});
const TOKENS = Number(args.tokens);
const PROMPT = Array.from({ length: 16 }, (_, i) => (i * 37 + 11) % 250);
const maxSeqLen = TOKENS + 64;

const mimo7b: ModelConfigInput = {
  vocabSize: 151680,
  dModel: 4096,
  nLayers: 36,
  nHeads: 32,
  nKvHeads: 8,
  dFF: 11008,
  maxSeqLen,
  ropeTheta: 640000,
  normEps: 1e-5,
  qkvBias: true,
  headKind: "sequential",
  mtpLayout: "mimo",
  nFuture: 2,
  dtype: "f16",
};
const SHAPES: Record<string, ModelConfigInput> = args.quick
  ? {
    "tiny": preset("quick-a", { maxSeqLen, headKind: "sequential", nFuture: 2, qkvBias: true }),
  }
  : {
    "MiMo-7B shape": mimo7b,
    "MiMo-7B shape q8": { ...mimo7b, dtype: "q8" },
    "small": preset("bench-small", { maxSeqLen, headKind: "sequential", nFuture: 2 }),
  };

/**
 * A model with random weights, filled fast: matrices are tiled from one pool of random f16
 * values (scaled 1/sqrt(cols), incompressible), norms 1, biases small. Seeded random init of
 * 7.6B weights in JS would take minutes; these weights only have to be random-looking.
 */
async function randomModel(config: ModelConfigInput): Promise<Model> {
  const model = await allocateModel(config);
  const pool = new Float32Array(1 << 22);
  let s = 12345;
  for (let i = 0; i < pool.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pool[i] = (s / 2 ** 32) * 2 - 1;
  }
  let big = new Uint16Array(0);
  for (const [name, shape] of model.tensorShapes()) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (shape.length === 1) {
      const v = new Float32Array(n);
      v.fill(name.includes("norm") ? 1 : 0.01);
      model.setTensor(name, v);
      continue;
    }
    const scale = 1.7 / Math.sqrt(shape[1]);
    if (big.length < n) big = new Uint16Array(n);
    const h = new Float16Array(pool.length);
    const off = name.length * 7919 % 1000; // a different phase per tensor
    for (let i = 0; i < pool.length; i++) h[i] = pool[(i + off) % pool.length] * scale;
    const bits = new Uint16Array(h.buffer);
    for (let at = 0; at < n; at += bits.length) {
      big.set(bits.subarray(0, Math.min(bits.length, n - at)), at);
    }
    model.setTensor(name, { dtype: "f16", bytes: new Uint8Array(big.buffer, 0, n * 2) });
  }
  await model.gpu.device.queue.onSubmittedWorkDone();
  return model;
}

/** The model's modules run every step, but the drafts they wrote are replaced by `replay`'s. */
function moduleThenReplay(continuation: number[]): DraftSource {
  const heads = headDraftSource();
  const replay = replayDrafts(continuation);
  return {
    name: "module + replay",
    attach(host) {
      const h = heads.attach(host), r = replay.attach(host);
      return {
        firstDrafts: r.firstDrafts,
        beforeVerify: (b) => [...h.beforeVerify(b), ...r.beforeVerify(b)],
        afterVerify: (b) => [...h.afterVerify(b), ...r.afterVerify(b)],
      };
    },
  };
}

/** Every 30th token of the continuation changed: drafts there are rejected (~96.6% accepted). */
const corrupt = (tokens: number[], v: number) =>
  tokens.map((t, i) => (i % 30 === 29 ? (t + 1) % v : t));

interface Row {
  model: string;
  run: string;
  drafts: number;
  msPerStep: number;
  tokensPerStep: number;
  tokensPerSecond: number;
  vsGreedy: number;
  /** ms/step of this run minus the same run's replay-only ms/step (module + replay rows). */
  draftMsPerStep: number | null;
  stats: GenerationStats;
}

const gpu0 = await createGpu();
const adapter = gpu0.adapterName;
gpu0.dispose();
console.log(`GPU: ${adapter}`);
const rows: Row[] = [];
for (const [name, config] of Object.entries(SHAPES)) {
  if (args.only && !new RegExp(args.only).test(name)) continue;
  const t0 = performance.now();
  const model = await randomModel(config);
  console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s to create`);
  try {
    const v = model.config.vocabSize;
    const opts = { maxTokens: TOKENS, timestamps: true, ignoreEos: true };
    const ms = (s: GenerationStats) => ((s.gpuDecodeSeconds ?? s.decodeSeconds) * 1000) / s.steps;
    // Each run twice, the faster kept: a first run can pay for clocks ramping up or batches
    // still finding their size (gpuDecodeSeconds includes the gaps between batches).
    const best = async (o: Parameters<typeof complete>[2]) => {
      const a = await complete(model, PROMPT, o), b = await complete(model, PROMPT, o);
      return ms(a.stats) <= ms(b.stats) ? a : b;
    };
    await complete(model, PROMPT, { ...opts, maxTokens: 8 });
    const greedy = await best(opts);
    const base = ms(greedy.stats);
    const add = (run: string, drafts: number, s: GenerationStats, draftMs: number | null) => {
      rows.push({
        model: name,
        run,
        drafts,
        msPerStep: ms(s),
        tokensPerStep: s.tokensPerStep,
        tokensPerSecond: s.tokensPerSecond,
        vsGreedy: s.tokensPerSecond / greedy.stats.tokensPerSecond,
        draftMsPerStep: draftMs,
        stats: s,
      });
      console.log(
        `${name}, ${run}, ${drafts} drafts: ${ms(s).toFixed(3)} ms/step, ` +
          `${s.tokensPerStep.toFixed(2)} tokens/step, ${s.tokensPerSecond.toFixed(0)} tokens/s`,
      );
    };
    add("greedy", 0, greedy.stats, null);
    for (const drafts of [1, 2, 3]) {
      const k = drafts + 1;
      for (
        const [label, cont] of [["", greedy.tokens], [
          ", every 30th wrong",
          corrupt(greedy.tokens, v),
        ]] as const
      ) {
        const spec = { ...opts, mode: "speculative" as const, blockSize: k };
        const check = (t: number[], what: string) => {
          if (t.join() !== greedy.tokens.join()) throw new Error(`${name}: ${what} != greedy`);
        };
        const r = await best({ ...spec, drafts: replayDrafts(cont) });
        check(r.tokens, "replay");
        const m = await best({ ...spec, drafts: moduleThenReplay(cont) });
        check(m.tokens, "module + replay");
        add(`replay${label}`, drafts, r.stats, null);
        add(`module + replay${label}`, drafts, m.stats, ms(m.stats) - ms(r.stats));
      }
      const own = await best({ ...opts, mode: "speculative", blockSize: k });
      if (own.tokens.join() !== greedy.tokens.join()) throw new Error(`${name}: module != greedy`);
      add("module's own drafts (random weights)", drafts, own.stats, null);
    }
    console.log(`${name}: greedy ${base.toFixed(3)} ms/step`);
  } finally {
    model.dispose();
  }
}

const table = [
  `GPU: ${adapter}; ${TOKENS} tokens after a ${PROMPT.length}-token prompt; random weights`,
  "",
  "| model | run | drafts/step | ms/step | tokens/step | tokens/s | x greedy | draft ms/step | draft share of step | one draft vs one verify step |",
  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ...rows.map((r) => {
    const verify = r.draftMsPerStep === null ? null : r.msPerStep - r.draftMsPerStep;
    return `| ${r.model} | ${r.run} | ${r.drafts} | ${r.msPerStep.toFixed(3)} | ${
      r.tokensPerStep.toFixed(2)
    } | ${r.tokensPerSecond.toFixed(0)} | ${r.vsGreedy.toFixed(2)} | ${
      r.draftMsPerStep === null ? "" : r.draftMsPerStep.toFixed(3)
    } | ${
      r.draftMsPerStep === null ? "" : `${(100 * r.draftMsPerStep / r.msPerStep).toFixed(1)}%`
    } | ${verify === null ? "" : (r.draftMsPerStep! / r.drafts / verify).toFixed(3)} |`;
  }),
];
console.log("\n" + table.join("\n"));
if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify(
      { adapter, tokens: TOKENS, prompt: PROMPT.length, shapes: SHAPES, rows },
      null,
      2,
    ),
  );
  console.log(`\nwrote ${args.json}`);
}
