/**
 * Generates tokens on an embedded default model and streams them, then prints tokens/s and
 * tokens per step.
 *
 *     deno run -A --unstable-webgpu examples/generate.ts
 *     deno run -A --unstable-webgpu examples/generate.ts --prompt 1,2,3 --max-tokens 200 --heads 4
 *
 * No trained model ships yet: the default model has seeded random weights, so its tokens are
 * noise and its heads rarely guess right. The numbers show the machinery, not a trained model.
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { createModel, generate, type GenerationStats, preset } from "../mod.ts";

const HELP = `Usage: deno run -A --unstable-webgpu examples/generate.ts [options]

Options:
  --prompt IDS        comma-separated token ids in [0, 256) (default "1,2,3")
  --max-tokens N      tokens to generate, >= 1 (default 64)
  --seed N            seed of the random weights (default 0)
  --heads N           output heads (nFuture), 1..8 (default 4)
  --mode MODE         "speculative" or "greedy" (default "speculative"; with --heads 1, greedy)
  --help              show this help
`;

const Args = z.object({
  prompt: z.string().regex(/^\s*\d+(\s*,\s*\d+)*\s*$/, "--prompt must be comma-separated token ids")
    .transform((s) => s.split(",").map((t) => Number(t.trim())))
    .refine((ids) => ids.every((t) => t < 256), "--prompt ids must be in [0, 256)"),
  maxTokens: z.coerce.number({ error: "--max-tokens must be an integer" }).int({
    error: "--max-tokens must be an integer",
  }).min(1, {
    error: "--max-tokens must be >= 1",
  }),
  seed: z.coerce.number({ error: "--seed must be an integer" }).int({
    error: "--seed must be an integer",
  }),
  heads: z.coerce.number({ error: "--heads must be in [1, 8]" }).int({
    error: "--heads must be in [1, 8]",
  }).min(1, {
    error: "--heads must be in [1, 8]",
  }).max(8, { error: "--heads must be in [1, 8]" }),
  mode: z.enum(["speculative", "greedy"], { error: '--mode must be "speculative" or "greedy"' }),
});

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      prompt: { type: "string", default: "1,2,3" },
      "max-tokens": { type: "string", default: "64" },
      seed: { type: "string", default: "0" },
      heads: { type: "string", default: "4" },
      mode: { type: "string", default: "speculative" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const r = Args.safeParse({
    prompt: values.prompt,
    maxTokens: values["max-tokens"],
    seed: values.seed,
    heads: values.heads,
    mode: values.mode,
  });
  if (!r.success) {
    console.error(`error: ${r.error.issues.map((i) => i.message).join("; ")}\n\n${HELP}`);
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
    `, ${s.hostSyncs} host syncs`;
}

if (import.meta.main) {
  let args;
  try {
    args = parse(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
  const mode = args.heads === 1 ? "greedy" : args.mode;
  const model = await createModel(
    // the KV cache holds exactly this request
    preset("demo", { maxSeqLen: args.prompt.length + args.maxTokens, nFuture: args.heads }),
    { seed: args.seed },
  );
  try {
    console.log(
      `Model: seeded random weights (seed ${args.seed}), ${args.heads} heads, on ${model.adapterName}.\n` +
        `No trained model ships yet, so these tokens are noise and the heads rarely guess right.\n` +
        `Mode: ${mode}. Prompt: ${args.prompt.join(",")}`,
    );
    const enc = new TextEncoder();
    const it = generate(model, args.prompt, { maxTokens: args.maxTokens, mode });
    let r = await it.next();
    while (!r.done) {
      await Deno.stdout.write(enc.encode(r.value.join(" ") + " "));
      r = await it.next();
    }
    console.log(`\n${statsLine(r.value, mode === "speculative")}`);
  } finally {
    model.dispose();
  }
}
