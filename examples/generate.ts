/**
 * Generates text and streams it, then prints tokens/s and tokens per step.
 *
 *     deno run -A --unstable-webgpu examples/generate.ts
 *     deno run -A --unstable-webgpu examples/generate.ts --model ./models/SmolLM2-135M --prompt "def fib(n):"
 *     deno run -A --unstable-webgpu examples/generate.ts --model DIR --chat --prompt "Write a haiku"
 *     deno run -A --unstable-webgpu examples/generate.ts --model DIR --heads-from MEDUSA_DIR
 *
 * With no --model it runs the default model that ships in models/ahead-code/: a 7M-parameter
 * byte-level JavaScript/TypeScript model with 4 heads, trained by `deno task train` (its model
 * card says how well it does). --random runs a model with seeded random weights instead.
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  byteTokenizer,
  createModel,
  generate,
  type GenerationStats,
  headsAndLookup,
  loadModel,
  lookupDrafts,
  type Model,
  preset,
  type Prompt,
} from "../mod.ts";
import { progressBar } from "./progress.ts";

const HELP = `Usage: deno run -A --unstable-webgpu examples/generate.ts [options]

Options:
  --model DIR         a Hugging Face model folder (path or URL); default: models/ahead-code
  --random            a byte model with seeded random weights instead (shows the machinery)
  --heads-from DIR    a folder holding heads 2..n for that model (ahead's or Medusa's)
  --prompt TEXT       the prompt (default "function fibonacci(n) {")
  --ids IDS           a prompt of comma-separated token ids instead of text
  --chat              send the prompt as a user message through the model's chat template
  --max-tokens N      tokens to generate, >= 1 (default 64)
  --max-seq-len N     longest sequence the model allocates for (default: the prompt + max-tokens)
  --mode MODE         "speculative" or "greedy" (default "speculative"; greedy without heads)
  --dtype TYPE        weight storage: f32, f16, q8 or q4 (quantized on the GPU as it loads);
                      default: the checkpoint's (f16 for f16 and bf16 checkpoints)
  --temperature T     sample at temperature T (default 0: greedy); speculative sampling is
                      lossless (the same distribution as plain sampling)
  --top-k N --top-p P cut the distribution before sampling
  --sample-seed N     seed of the sampling (default: random, printed with the stats)
  --drafts SOURCE     "heads" (default), "lookup" (prompt lookup) or "heads+lookup"
  --heads N           output heads of the --random model, 1..8 (default 4)
  --seed N            seed of the --random model's weights (default 0)
  --help              show this help
`;

const int = (flag: string, min: number, max = Infinity) =>
  z.coerce.number({ error: `${flag} must be an integer` })
    .int({ error: `${flag} must be an integer` })
    .min(min, { error: `${flag} must be >= ${min}` })
    .max(max, { error: `${flag} must be <= ${max}` });

const Args = z.object({
  model: z.string().optional(),
  headsFrom: z.string().optional(),
  prompt: z.string(),
  ids: z.string().regex(/^\s*\d+(\s*,\s*\d+)*\s*$/, "--ids must be comma-separated token ids")
    .transform((s) => s.split(",").map((t) => Number(t.trim()))).optional(),
  chat: z.boolean(),
  random: z.boolean(),
  maxTokens: int("--max-tokens", 1),
  maxSeqLen: int("--max-seq-len", 2).optional(),
  mode: z.enum(["speculative", "greedy"], { error: '--mode must be "speculative" or "greedy"' }),
  dtype: z.enum(["f32", "f16", "q8", "q4"], { error: "--dtype must be f32, f16, q8 or q4" })
    .optional(),
  heads: int("--heads", 1, 8),
  seed: int("--seed", 0),
  temperature: z.coerce.number({ error: "--temperature must be a number" }).optional(),
  topK: int("--top-k", 1).optional(),
  topP: z.coerce.number({ error: "--top-p must be a number" }).optional(),
  sampleSeed: int("--sample-seed", 0).optional(),
  drafts: z.enum(["heads", "lookup", "heads+lookup"], {
    error: '--drafts must be "heads", "lookup" or "heads+lookup"',
  }),
});

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      "heads-from": { type: "string" },
      prompt: { type: "string", default: "function fibonacci(n) {" },
      random: { type: "boolean", default: false },
      ids: { type: "string" },
      chat: { type: "boolean", default: false },
      "max-tokens": { type: "string", default: "64" },
      "max-seq-len": { type: "string" },
      mode: { type: "string", default: "speculative" },
      dtype: { type: "string" },
      heads: { type: "string", default: "4" },
      seed: { type: "string", default: "0" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "top-p": { type: "string" },
      "sample-seed": { type: "string" },
      drafts: { type: "string", default: "heads" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const r = Args.safeParse({
    model: values.model,
    headsFrom: values["heads-from"],
    prompt: values.prompt,
    ids: values.ids,
    chat: values.chat,
    random: values.random,
    maxTokens: values["max-tokens"],
    maxSeqLen: values["max-seq-len"],
    mode: values.mode,
    dtype: values.dtype,
    heads: values.heads,
    seed: values.seed,
    temperature: values.temperature,
    topK: values["top-k"],
    topP: values["top-p"],
    sampleSeed: values["sample-seed"],
    drafts: values.drafts,
  });
  if (!r.success) {
    console.error(`error: ${r.error.issues.map((i) => i.message).join("; ")}\n\n${HELP}`);
    Deno.exit(2);
  }
  if (r.data.headsFrom && !r.data.model) {
    console.error(`error: --heads-from needs --model\n\n${HELP}`);
    Deno.exit(2);
  }
  return r.data;
}

function statsLine(s: GenerationStats, speculative: boolean): string {
  const acceptance = speculative
    ? s.headAcceptance.slice(1).map((a) => a.toFixed(2)).join(" ")
    : "";
  return `${s.tokens} tokens in ${s.steps} steps: ${s.tokensPerStep.toFixed(2)} tokens/step, ` +
    `${s.tokensPerSecond.toFixed(1)} tokens/s` +
    (acceptance ? `, head acceptance ${acceptance}` : "") +
    `, ${s.hostSyncs} host syncs` + (s.seed !== undefined ? `, sampling seed ${s.seed}` : "");
}

async function open(args: ReturnType<typeof parse>): Promise<{ model: Model; about: string }> {
  const promptLength = args.ids?.length ?? new TextEncoder().encode(args.prompt).length + 64;
  if (!args.random) {
    const bar = progressBar("loading");
    const source = args.model === undefined
      ? new URL("../models/ahead-code/", import.meta.url) // works from a checkout and from JSR
      : /^[a-z]+:/.test(args.model)
      ? new URL(args.model)
      : args.model;
    const model = await loadModel(source, {
      maxSeqLen: args.maxSeqLen,
      heads: args.headsFrom,
      dtype: args.dtype,
      onProgress: (p) => bar.update(p.bytes, p.totalBytes),
    });
    bar.end();
    const c = model.config;
    return {
      model,
      about:
        `Model: ${
          args.model ?? "ahead-code (the default)"
        } (${c.nLayers} layers, d${c.dModel}, ${c.nFuture} heads` +
        `${c.nFuture > 1 ? ` (${c.headKind})` : ""}, ${c.dtype}), on ${model.adapterName}.`,
    };
  }
  const model = await createModel(
    preset("demo", {
      maxSeqLen: args.maxSeqLen ?? promptLength + args.maxTokens,
      nFuture: args.heads,
      ...(args.dtype ? { dtype: args.dtype } : {}),
    }),
    { seed: args.seed },
  );
  model.tokenizer = byteTokenizer();
  return {
    model,
    about:
      `Model: seeded random weights (seed ${args.seed}), byte vocabulary, ${args.heads} heads, ` +
      `on ${model.adapterName}.\nNo trained model ships yet, so this text is noise and the heads ` +
      `rarely guess right.`,
  };
}

if (import.meta.main) {
  let args;
  try {
    args = parse(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
  let opened;
  try {
    opened = await open(args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const { model, about } = opened;
  try {
    const lookup = args.drafts !== "heads";
    const mode = model.config.nFuture === 1 && !lookup ? "greedy" : args.mode;
    const prompt: Prompt = args.ids ??
      (args.chat ? [{ role: "user", content: args.prompt }] : args.prompt);
    console.log(
      `${about}\nMode: ${mode}. Prompt: ${
        args.ids ? args.ids.join(",") : JSON.stringify(args.prompt)
      }`,
    );
    const enc = new TextEncoder();
    const it = generate(model, prompt, {
      maxTokens: args.maxTokens,
      mode,
      temperature: args.temperature,
      topK: args.topK,
      topP: args.topP,
      seed: args.sampleSeed,
      ...(mode === "speculative" && lookup
        ? {
          drafts: args.drafts === "lookup" ? lookupDrafts() : headsAndLookup(),
          blockSize: 8,
        }
        : {}),
    });
    let r = await it.next();
    while (!r.done) {
      await Deno.stdout.write(enc.encode(r.value.text ?? r.value.ids.join(" ") + " "));
      r = await it.next();
    }
    console.log(`\n${statsLine(r.value, mode === "speculative")}`);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exitCode = 1;
  } finally {
    model.dispose();
  }
}
