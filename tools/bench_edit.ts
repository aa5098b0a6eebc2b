/**
 * The speculative-edit benchmark: on snippets of held-out code files (whole lines, at most
 * --chars characters, so the original and the new file fit the default model's 512-byte
 * context), inserts a comment line and lets the model write the new file (examples/edit.ts),
 * greedy and with each draft source; pools tokens, steps and seconds over the snippets.
 *
 *     deno run -A --unstable-webgpu tools/bench_edit.ts --heldout DIR [--model DIR]
 *       [--files 20] [--chars 220] [--json FILE]
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { byteTokenizer, loadModel } from "../mod.ts";
import { speculativeEdit } from "../examples/edit.ts";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    heldout: { type: "string" },
    files: { type: "string", default: "20" },
    chars: { type: "string", default: "220" },
    json: { type: "string" },
  },
});
if (!a.heldout) {
  console.error(
    "usage: tools/bench_edit.ts --heldout DIR [--model DIR] [--files 20] [--json FILE]",
  );
  Deno.exit(2);
}
const model = await loadModel(a.model ?? new URL("../models/ahead-code/", import.meta.url), {
  onWarning: () => {},
});
model.tokenizer ??= byteTokenizer();
const names: string[] = [];
for await (const e of Deno.readDir(a.heldout)) if (e.isFile) names.push(e.name);
names.sort();
const pooled = new Map<string, { tokens: number; steps: number; seconds: number }>();
let matching = 0, expected = 0, snippets = 0;
for (const name of names) {
  if (snippets >= Number(a.files)) break;
  const lines = (await Deno.readTextFile(join(a.heldout, name))).split("\n");
  let text = "";
  for (const l of lines) {
    if (text.length + l.length + 1 > Number(a.chars)) break;
    text += l + "\n";
  }
  if (text.split("\n").length < 6) continue;
  const r = await speculativeEdit(model, text, { insert: "2:// edited" });
  for (const run of r.runs) {
    const p = pooled.get(run.drafts) ?? { tokens: 0, steps: 0, seconds: 0 };
    p.tokens += run.stats.tokens;
    p.steps += run.stats.steps;
    p.seconds += run.stats.decodeSeconds;
    pooled.set(run.drafts, p);
  }
  matching += r.matching;
  expected += r.expected.length;
  snippets++;
}
const greedy = pooled.get("greedy")!;
const rows = [...pooled.entries()].map(([drafts, p]) => ({
  drafts,
  ...p,
  tokensPerStep: p.tokens / p.steps,
  tokensPerSecond: p.tokens / p.seconds,
  vsGreedy: (p.tokens / p.seconds) / (greedy.tokens / greedy.seconds),
}));
const result = {
  adapter: model.adapterName,
  snippets,
  expectedShare: matching / expected,
  rows,
};
model.dispose();
console.log(JSON.stringify(result, null, 2));
if (a.json) await Deno.writeTextFile(a.json, JSON.stringify(result, null, 2) + "\n");
