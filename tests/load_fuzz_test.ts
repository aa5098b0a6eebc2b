// Seeded fuzzing of loadModel(): mutations of a valid small saved checkpoint (its
// model.safetensors and, in some cases, its config.json), each loaded on ONE shared device. The
// only acceptable outcomes are a loaded model or a CheckpointError; after every case nothing may
// be left on the GPU and the device may have reported no error. Every case runs against a
// timer, so a hang fails with its seed.
import assert from "node:assert/strict";
import { join } from "node:path";
import { CheckpointError } from "../gpu/errors.ts";
import { forward } from "../heads/forward.ts";
import { createModel } from "../heads/model.ts";
import { loadModel } from "../io/load.ts";
import { saveModel } from "../io/save.ts";
import { below, mulberry32, mutate, ODD_VALUES, pick, type Random } from "./mutate.ts";
import { watchedDevice } from "./helpers.ts";

/** Cases run by the test. */
const CASES = 3000;
/** Longest a case may take before it counts as a hang. */
const CASE_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------------------------------------
// Mutation generator of config.json

type Json = Record<string, unknown>;

/** Values that config edits put where a field expects a number, a string or a flag. */
const CONFIG_VALUES: readonly unknown[] = [
  ...ODD_VALUES,
  2,
  4,
  16,
  24,
  25,
  40,
  67,
  4096,
  1e9,
  NaN,
  "silu",
  "gelu",
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
  "gemma2",
  "float16",
  "bfloat16",
  "float32",
  "int8",
  "medusa",
  "transformer",
];

/** Whole fields a real config.json may hold, some of which the engine refuses. */
const CONFIG_FIELDS: readonly [string, unknown][] = [
  ["tie_word_embeddings", true],
  ["torch_dtype", "float16"],
  ["torch_dtype", "bfloat16"],
  ["dtype", "float16"],
  ["rope_theta", 500000],
  ["rope_scaling", null],
  ["rope_scaling", { type: "linear", factor: 2 }],
  ["rope_scaling", { rope_type: "yarn", factor: 4 }],
  ["rope_scaling", {
    rope_type: "llama3",
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 8,
  }],
  ["rope_parameters", { rope_type: "linear", factor: 2, rope_theta: 1e4 }],
  ["rope_parameters", { rope_type: "default" }],
  ["rope_parameters", "default"],
  ["sliding_window", 8],
  ["sliding_window", null],
  ["use_sliding_window", true],
  ["model_type", "mistral"],
  ["model_type", "qwen2"],
  ["model_type", "qwen3"],
  ["attention_bias", true],
  ["mlp_bias", true],
  ["num_local_experts", 4],
  ["quantization_config", { quant_method: "gptq" }],
  ["hidden_act", "gelu"],
  ["head_dim", 8],
  ["head_dim", 12],
  ["head_dim", null],
  ["num_key_value_heads", 3],
  ["num_key_value_heads", null],
  ["max_position_embeddings", 1e9],
  ["max_position_embeddings", 1],
  ["rms_norm_eps", 0],
  ["rms_norm_eps", 2],
  ["eos_token_id", [1, 2, 1e9, -1, "x"]],
  ["bos_token_id", "x"],
  ["ahead", null],
  ["ahead", "yes"],
  ["ahead", { nFuture: 3, headKind: "medusa" }],
  ["ahead", { nFuture: 1, headKind: "tree" }],
  ["ahead", { nFuture: 1, headsOwnUnembedding: true }],
  ["ahead", { nFuture: 1, qkNorm: true }],
  ["ahead", { nFuture: 0 }],
  ["ahead", { nFuture: 1.5 }],
];

function numericKeys(obj: Json): string[] {
  return Object.keys(obj).filter((k) => typeof obj[k] === "number");
}

/**
 * Mutates a valid config.json (its parsed form); deterministic in `r`. The result is a JSON
 * value, or text that may not parse.
 */
function mutateConfig(r: Random, base: Json): { config: Json | string; what: string } {
  const config: Json = structuredClone(base);
  const ahead = (config.ahead ?? {}) as Json;
  const keys = Object.keys(config);
  switch (below(r, 7)) {
    case 0: { // delete a field
      const key = pick(r, keys);
      delete config[key];
      return { config, what: `config: delete ${key}` };
    }
    case 1: { // an odd value for a field
      const key = pick(r, keys);
      config[key] = pick(r, CONFIG_VALUES);
      return { config, what: `config: ${key} = ${JSON.stringify(config[key])}` };
    }
    case 2: { // an odd value in the ahead section
      const key = pick(r, [...Object.keys(ahead), "nFuture", "headKind"]);
      ahead[key] = pick(r, CONFIG_VALUES);
      config.ahead = ahead;
      return { config, what: `config: ahead.${key} = ${JSON.stringify(ahead[key])}` };
    }
    case 3: { // a size nudged
      const key = pick(r, numericKeys(config));
      const v = config[key] as number;
      config[key] = pick(r, [v + 1, v - 1, v * 2, v / 2, -v, v + 8]);
      return { config, what: `config: ${key} = ${config[key]}` };
    }
    case 4:
    case 5: { // a field real checkpoints have
      const [key, value] = pick(r, CONFIG_FIELDS);
      config[key] = structuredClone(value);
      return { config, what: `config: ${key} = ${JSON.stringify(value)}` };
    }
    default: { // damaged text
      const text = JSON.stringify(config);
      if (r() < 0.5) {
        const at = below(r, text.length);
        return { config: text.slice(0, at), what: `config: cut at ${at} chars` };
      }
      const at = below(r, text.length);
      const c = pick(r, [...'{}[]":,-.e0 x']);
      return {
        config: text.slice(0, at) + c + text.slice(at + 1),
        what: `config: char ${at} = ${JSON.stringify(c)}`,
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Harness

/** What a case came to: loaded, refused, or a failure message. */
type Outcome = "loaded" | "refused" | { failure: string };

Deno.test(`loadModel() loads or refuses with a CheckpointError ${CASES} mutated checkpoints, leaving nothing on one shared device`, async () => {
  const root = await Deno.makeTempDir({ prefix: "load_fuzz_" });
  const w = await watchedDevice();
  try {
    // The smallest model shape: one layer, one head, f32.
    const model = await createModel({
      vocabSize: 67,
      dModel: 24,
      nLayers: 1,
      nHeads: 3,
      nKvHeads: 1,
      headDim: 8,
      dFF: 40,
      maxSeqLen: 16,
      nFuture: 1,
      dtype: "f32",
    }, { seed: 1, device: w.device });
    const baseDir = join(root, "base");
    await saveModel(model, baseDir);
    model.dispose();
    const baseSt = await Deno.readFile(join(baseDir, "model.safetensors"));
    const baseConfig = JSON.parse(await Deno.readTextFile(join(baseDir, "config.json")));
    const dir = join(root, "case");
    await Deno.mkdir(dir);
    const stPath = join(dir, "model.safetensors");
    const configPath = join(dir, "config.json");

    let loaded = 0, refused = 0;
    const failures: string[] = [];
    const kinds = new Map<string, number>();
    const started = performance.now();
    for (let seed = 0; seed < CASES; seed++) {
      // The config is mutated in about 30% of the cases, alone in half of those.
      const r = mulberry32(seed ^ 0x5eed);
      const editConfig = r() < 0.3;
      const editFile = !editConfig || r() < 0.5;
      const file = editFile ? mutate(baseSt, seed) : { bytes: baseSt, what: "file unchanged" };
      const config = editConfig
        ? mutateConfig(r, baseConfig)
        : { config: baseConfig, what: "config unchanged" };
      await Deno.writeFile(stPath, file.bytes);
      await Deno.writeTextFile(
        configPath,
        typeof config.config === "string" ? config.config : JSON.stringify(config.config),
      );
      const what = `seed ${seed} (${file.what}; ${config.what})`;

      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), CASE_TIMEOUT_MS);
      });
      const attempt: Promise<Outcome> = loadModel(dir, { device: w.device, onWarning: () => {} })
        .then(async (m) => {
          try {
            // Every 16th loaded model also runs: what loads must be usable.
            if (loaded % 16 === 0) {
              const logits = await forward(m, [1, 2, 3]);
              assert.equal(logits.length, m.config.nFuture);
              assert.equal(logits[0].length, 3 * m.config.vocabSize);
            }
          } finally {
            m.dispose();
          }
          return "loaded" as const;
        }).catch((e: unknown) => {
          if (e instanceof CheckpointError) return "refused" as const;
          const name = e instanceof Error ? e.name : typeof e;
          kinds.set(name, (kinds.get(name) ?? 0) + 1);
          return { failure: `${name}: ${e instanceof Error ? e.message : String(e)}` };
        });
      const outcome = await Promise.race([attempt, timeout]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        failures.push(`${what}: no outcome after ${CASE_TIMEOUT_MS} ms`);
        break; // the hung load still holds the device: later cases would not be independent
      }
      if (outcome === "loaded") loaded++;
      else if (outcome === "refused") refused++;
      else failures.push(`${what}: ${outcome.failure}`);
      if (w.live.size > 0) {
        failures.push(`${what}: ${w.live.size} GPU buffer(s) left: ${[...w.live.values()]}`);
        for (const b of [...w.live.keys()]) b.destroy();
      }
      if (w.errors.length > 0) {
        failures.push(`${what}: the device reported ${w.errors.splice(0).join("; ")}`);
      }
    }
    await w.device.queue.onSubmittedWorkDone();
    if (w.errors.length > 0) failures.push(`after the last case: ${w.errors.join("; ")}`);
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `${CASES} cases in ${seconds.toFixed(1)} s: ${loaded} loaded, ${refused} refused, ` +
        `${failures.length} failed`,
    );
    assert.deepEqual(
      failures.slice(0, 25),
      [],
      `${failures.length} case(s) failed (${
        [...kinds].map(([k, n]) => `${n} ${k}`).join(", ") || "no unexpected error class"
      }); the first ones are listed`,
    );
    // Both outcomes must be common, or the mutations are too weak (or too destructive).
    assert.ok(loaded > 150, `only ${loaded} mutated checkpoints loaded`);
    assert.ok(refused > 1000, `only ${refused} mutated checkpoints were refused`);
  } finally {
    w.device.destroy();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("mutateConfig() is deterministic in its seed and changes the config", () => {
  const base = {
    model_type: "llama",
    vocab_size: 67,
    hidden_size: 24,
    ahead: { nFuture: 1, headKind: "transformer" },
  };
  let changed = 0;
  for (let seed = 0; seed < 200; seed++) {
    const a = mutateConfig(mulberry32(seed), base);
    assert.deepEqual(a, mutateConfig(mulberry32(seed), base), `seed ${seed}`);
    if (JSON.stringify(a.config) !== JSON.stringify(base)) changed++;
  }
  assert.ok(changed > 170, `only ${changed} of 200 mutations changed the config`);
  assert.equal(base.ahead.nFuture, 1, "the base is not modified");
});
