/**
 * Speculative edits: the model rewrites a code file with a small change, with the original file
 * as the draft. The prompt is the original file, a blank line, and the new file up to and
 * including its first changed line; the model writes the rest. Prompt lookup proposes what
 * followed the same few tokens in the original, so where the new file repeats the old one a
 * single forward pass verifies up to --block - 1 drafted tokens. The output is exactly what
 * greedy decoding of the same prompt writes (checked here on every run).
 *
 *     deno run -A --unstable-webgpu examples/edit.ts
 *     deno run -A --unstable-webgpu examples/edit.ts --file src/x.ts --rename count=total
 *     deno run -A --unstable-webgpu examples/edit.ts --model DIR --file a.py --insert 12:"    # note"
 *
 * It prints the new file, then tokens per step and tokens/s for greedy decoding, the model's
 * heads, prompt lookup, and heads with lookup, and how much of the output is the expected file.
 * @module
 */
import { parseArgs } from "node:util";
import {
  byteTokenizer,
  complete,
  type DraftSource,
  type GenerationStats,
  headsAndLookup,
  InvalidInputError,
  loadModel,
  lookupDrafts,
  type Model,
} from "../mod.ts";

const HELP = `Usage: deno run -A --unstable-webgpu examples/edit.ts [options]

Options:
  --model DIR        a Hugging Face model folder; default: models/ahead-code
  --file PATH        the code file to edit (default: one of this repository's kernels)
  --rename OLD=NEW   rename an identifier everywhere (default: a rename in the default file)
  --insert N:TEXT    insert a line TEXT before line N (1-based) instead
  --block N          rows verified per step, 2..8 (default 8: up to 7 drafted tokens)
  --max-seq-len N    positions to allocate (default: the model's max_position_embeddings)
  --json FILE        write the measurements as JSON
  --help             show this help
`;

/** The file's new text, and where the new text first differs from the old. */
function applyChange(
  text: string,
  o: { rename?: string; insert?: string },
): { edited: string; firstChange: number } {
  let edited: string;
  if (o.insert !== undefined) {
    const m = /^(\d+):(.*)$/s.exec(o.insert);
    if (!m) throw new InvalidInputError(`--insert must be N:TEXT, got ${o.insert}`);
    const lines = text.split("\n");
    const at = Number(m[1]) - 1;
    if (at < 0 || at > lines.length) {
      throw new InvalidInputError(`--insert line ${m[1]} is outside 1..${lines.length + 1}`);
    }
    lines.splice(at, 0, m[2]);
    edited = lines.join("\n");
  } else {
    const [from, to] = (o.rename ?? "").split("=");
    if (!from || to === undefined) {
      throw new InvalidInputError(`--rename must be OLD=NEW, got ${o.rename}`);
    }
    const re = new RegExp(`\\b${from.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`, "g");
    if (!re.test(text)) throw new InvalidInputError(`"${from}" does not occur in the file`);
    edited = text.replace(re, to);
  }
  let i = 0;
  while (i < text.length && text[i] === edited[i]) i++;
  return { edited, firstChange: i };
}

/** One run's figures. */
interface Run {
  drafts: string;
  tokensPerStep: number;
  tokensPerSecond: number;
  vsGreedy: number;
  stats: GenerationStats;
}

/**
 * Rewrites `text` with a change: greedy, then with each draft source; returns the output and the
 * runs. The output is checked to be the same for every source.
 */
export async function speculativeEdit(
  model: Model,
  text: string,
  change: { rename?: string; insert?: string },
  o: { block?: number } = {},
): Promise<{ output: string; expected: string; matching: number; runs: Run[] }> {
  const tok = model.tokenizer ?? byteTokenizer();
  const { edited, firstChange } = applyChange(text, change);
  const lineEnd = edited.indexOf("\n", firstChange);
  const cut = lineEnd < 0 ? edited.length : lineEnd + 1;
  const prompt = tok.encode(`${text}\n\n${edited.slice(0, cut)}`, { addSpecialTokens: false });
  const rest = tok.encode(edited.slice(cut), { addSpecialTokens: false });
  const maxTokens = Math.min(rest.length + 8, model.config.maxSeqLen - prompt.length);
  if (maxTokens < 1) {
    throw new InvalidInputError(
      `the file is too long for this model: the prompt alone takes ${prompt.length} of its ` +
        `${model.config.maxSeqLen} positions`,
    );
  }
  const block = o.block ?? 8;
  const base = { maxTokens, tokenizer: tok };
  const sources: [string, DraftSource | null, number][] = [
    ["greedy", null, 1],
    ...(model.config.nFuture > 1 ? [["heads", null, 0] as [string, null, number]] : []),
    ["prompt lookup", lookupDrafts(), block],
    ...(model.config.nFuture > 1
      ? [["heads + lookup", headsAndLookup(), block] as [string, DraftSource, number]]
      : []),
  ];
  const runs: Run[] = [];
  let greedy: { tokens: number[]; text?: string; stats: GenerationStats } | null = null;
  for (const [name, drafts, k] of sources) {
    const opts = name === "greedy"
      ? base
      : { ...base, mode: "speculative" as const, ...(drafts ? { drafts, blockSize: k } : {}) };
    await complete(model, prompt, { ...opts, maxTokens: 8 }); // compile the pipelines
    const r = await complete(model, prompt, opts);
    greedy ??= r;
    if (r.tokens.join() !== greedy.tokens.join()) {
      throw new Error(`${name}: the output differs from greedy decoding (a bug: please report it)`);
    }
    runs.push({
      drafts: name,
      tokensPerStep: r.stats.tokensPerStep,
      tokensPerSecond: r.stats.tokensPerSecond,
      vsGreedy: r.stats.tokensPerSecond / greedy.stats.tokensPerSecond,
      stats: r.stats,
    });
  }
  const output = greedy!.text ?? tok.decode(greedy!.tokens);
  const expected = edited.slice(cut);
  let matching = 0;
  while (matching < output.length && output[matching] === expected[matching]) matching++;
  return { output, expected, matching, runs };
}

if (import.meta.main) {
  const { values: a } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      file: { type: "string" },
      rename: { type: "string" },
      insert: { type: "string" },
      block: { type: "string", default: "8" },
      "max-seq-len": { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (a.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const block = Number(a.block);
  if (!Number.isInteger(block) || block < 2 || block > 8) {
    console.error(`error: --block must be an integer in 2..8, got ${a.block}\n\n${HELP}`);
    Deno.exit(2);
  }
  const file = a.file ?? new URL("../kernels/gather_rows.ts", import.meta.url).pathname;
  const change = a.insert !== undefined
    ? { insert: a.insert }
    : { rename: a.rename ?? (a.file ? undefined : "outRow=targetRow") };
  let model: Model | null = null;
  try {
    const text = await Deno.readTextFile(file);
    model = await loadModel(a.model ?? new URL("../models/ahead-code/", import.meta.url), {
      onWarning: () => {},
      maxSeqLen: a["max-seq-len"] ? Number(a["max-seq-len"]) : undefined,
    });
    model.tokenizer ??= byteTokenizer();
    const r = await speculativeEdit(model, text, change, { block });
    console.log(r.output);
    console.error(
      `\n${model.adapterName}; ${r.matching} of ${r.expected.length} characters as expected\n`,
    );
    for (const run of r.runs) {
      console.error(
        `${run.drafts.padEnd(16)} ${run.tokensPerStep.toFixed(2)} tokens/step  ` +
          `${run.tokensPerSecond.toFixed(0).padStart(6)} tokens/s  ${
            run.vsGreedy.toFixed(2)
          }x greedy`,
      );
    }
    if (a.json) await Deno.writeTextFile(a.json, JSON.stringify({ file, change, ...r }, null, 2));
  } catch (e) {
    if (e instanceof InvalidInputError || e instanceof Deno.errors.NotFound) {
      console.error(`error: ${(e as Error).message}`);
      Deno.exit(2);
    }
    throw e;
  } finally {
    model?.dispose();
  }
}
