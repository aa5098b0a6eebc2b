/**
 * What sampling costs per decode step: greedy, temperature only, top-k, top-p, and every cut with
 * a repetition penalty, on the small and the ~1.1B bench shapes (random weights, 512 tokens after
 * a 16-token prompt, GPU timestamps, the faster of two runs).
 *
 *     deno run -A --unstable-webgpu bench/sampling.ts [--json FILE]
 * @module
 */
import { parseArgs } from "node:util";
import { complete, createModel, type GenerationStats, preset } from "../mod.ts";

const { values: args } = parseArgs({ args: Deno.args, options: { json: { type: "string" } } });
const runs: [string, Record<string, number>][] = [
  ["greedy", {}],
  ["T 0.7", { temperature: 0.7, seed: 1 }],
  ["T 0.7, top-k 50", { temperature: 0.7, topK: 50, seed: 1 }],
  ["T 0.7, top-p 0.9", { temperature: 0.7, topP: 0.9, seed: 1 }],
  ["T 0.7, top-k 50, top-p 0.9, min-p 0.05, penalty 1.1", {
    temperature: 0.7,
    topK: 50,
    topP: 0.9,
    minP: 0.05,
    repetitionPenalty: 1.1,
    seed: 1,
  }],
];
const rows: { model: string; run: string; msPerStep: number }[] = [];
const ms = (s: GenerationStats) => ((s.gpuDecodeSeconds ?? s.decodeSeconds) * 1000) / s.steps;
let adapter = "";
for (const name of ["bench-small", "bench-1.1b"] as const) {
  const m = await createModel(preset(name, { maxSeqLen: 600 }), { seed: 1 });
  adapter = m.adapterName;
  const prompt = Array.from({ length: 16 }, (_, i) => (i * 37 + 11) % 250);
  const o = { maxTokens: 512, timestamps: true, ignoreEos: true };
  try {
    for (const [run, extra] of runs) {
      await complete(m, prompt, { ...o, ...extra, maxTokens: 8 });
      const a = await complete(m, prompt, { ...o, ...extra });
      const b = await complete(m, prompt, { ...o, ...extra });
      rows.push({ model: name, run, msPerStep: Math.min(ms(a.stats), ms(b.stats)) });
      console.log(`${name}, ${run}: ${rows.at(-1)!.msPerStep.toFixed(3)} ms/step`);
    }
  } finally {
    m.dispose();
  }
}
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify({ adapter, rows }, null, 2));
