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

/** Cases run by the test. */
const CASES = 3000;
/** Longest a case may take before it counts as a hang. */
const CASE_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------------------------------------
// Mutation generator of model.safetensors (copied from tests/safetensors_fuzz_test.ts)

/** mulberry32: a tiny seeded PRNG, so a failing case is reproduced from its seed alone. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Random = () => number;
const below = (r: Random, n: number) => Math.floor(r() * n);
const pick = <T>(r: Random, items: readonly T[]): T => items[below(r, items.length)];

/** Values that JSON edits put where a header expects a dtype, a size or an offset. */
const ODD_VALUES: readonly unknown[] = [
  -1,
  0,
  1,
  3,
  7,
  8,
  64,
  -0.5,
  0.5,
  1e-300,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  1e300,
  -1e300,
  Number.MAX_SAFE_INTEGER,
  "F32",
  "F16",
  "BF16",
  "I8",
  "F64",
  "F8_E4M3",
  "F128",
  "",
  "constructor",
  "__proto__",
  "toString",
  "8",
  "[0, 8]",
  null,
  true,
  false,
  [],
  [0],
  [8, 0],
  [-1, 4],
  [0, 1e300],
  [1, 2, 3],
  ["0", "8"],
  [[0, 8]],
  {},
  { "0": 0, "1": 8 },
  { dtype: "F32", shape: [2], data_offsets: [0, 8] },
];

const ODD_NAMES = ["", "__proto__", "constructor", "toString", "__metadata__", "a\u0000b", "😀"];

function splitFile(bytes: Uint8Array): { header: string; data: Uint8Array } | undefined {
  if (bytes.length < 8) return undefined;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) return undefined;
  const end = 8 + Number(n);
  return {
    header: new TextDecoder().decode(bytes.subarray(8, end)),
    data: bytes.subarray(end),
  };
}

function joinFile(header: string, data: Uint8Array): Uint8Array {
  const text = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

/** A JSON edit of one header field, or undefined when the header is not a JSON object. */
function editJson(r: Random, header: string): { header: string; what: string } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(header);
  } catch {
    return undefined;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const obj = json as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 0) return undefined;
  const key = pick(r, keys);
  const value = pick(r, ODD_VALUES);
  const entry = obj[key];
  const field = pick(r, ["dtype", "shape", "data_offsets"]);
  const kind = below(r, 7);
  let what: string;
  if (kind === 0 || typeof entry !== "object" || entry === null) {
    obj[key] = value;
    what = `${key} = ${JSON.stringify(value)}`;
  } else if (kind === 1) {
    (entry as Record<string, unknown>)[field] = value;
    what = `${key}.${field} = ${JSON.stringify(value)}`;
  } else if (kind === 2) {
    const list = (entry as Record<string, unknown>)[field];
    if (!Array.isArray(list) || list.length === 0) return undefined;
    const at = below(r, list.length + 1);
    list[at] = pick(r, [value, value, (list[0] as number) + 1, (list[0] as number) - 1]);
    what = `${key}.${field}[${at}] = ${JSON.stringify(list[at])}`;
  } else if (kind === 3) {
    delete (entry as Record<string, unknown>)[field];
    what = `delete ${key}.${field}`;
  } else if (kind === 4) {
    const name = pick(r, ODD_NAMES);
    const renamed: Record<string, unknown> = {};
    for (const k of keys) renamed[k === key ? name : k] = obj[k];
    return { header: JSON.stringify(renamed), what: `rename ${key} to ${JSON.stringify(name)}` };
  } else if (kind === 5) {
    (entry as Record<string, unknown>).dtype = pick(r, ["F32", "F16", "BF16", "I64", "U8", "BOOL"]);
    what = `${key}.dtype = ${JSON.stringify((entry as Record<string, unknown>).dtype)}`;
  } else {
    // Two entries share their data: overlapping, or identical ranges.
    const other = obj[pick(r, keys)];
    if (typeof other !== "object" || other === null) return undefined;
    (entry as Record<string, unknown>).data_offsets = (other as Record<string, unknown>)
      .data_offsets;
    what = `${key}.data_offsets copied from another entry`;
  }
  return { header: JSON.stringify(obj), what };
}

/** Text edits that JSON.parse lets through: the same key twice, at top level or in an entry. */
function duplicateKey(r: Random, header: string): { header: string; what: string } | undefined {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(header);
  } catch {
    return undefined;
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return undefined;
  const keys = Object.keys(obj);
  if (keys.length === 0) return undefined;
  const key = pick(r, keys);
  const body = header.trimEnd();
  if (!body.startsWith("{") || !body.endsWith("}")) return undefined;
  const inner = body.slice(1, -1);
  const copy = `${JSON.stringify(key)}:${JSON.stringify(obj[pick(r, keys)] ?? null)}`;
  switch (below(r, 3)) {
    case 0:
      return { header: `{${copy},${inner}}`, what: `duplicate ${key} first` };
    case 1:
      return { header: `{${inner},${copy}}`, what: `duplicate ${key} last` };
    default: {
      const field = pick(r, ['"dtype":', '"shape":', '"data_offsets":']);
      const at = header.indexOf(field);
      if (at < 0) return undefined;
      const extra = `${field}${JSON.stringify(pick(r, ODD_VALUES))},`;
      return {
        header: header.slice(0, at) + extra + header.slice(at),
        what: `duplicate ${field} inside an entry`,
      };
    }
  }
}

/**
 * Mutates a valid safetensors file. Deterministic in `seed`; `what` says what was done, for the
 * failure message. Applies one to three mutations in a row, so edits also meet each other.
 */
function mutate(base: Uint8Array, seed: number): { bytes: Uint8Array; what: string } {
  const r = mulberry32(seed);
  let bytes: Uint8Array = base.slice();
  const done: string[] = [];
  const rounds = 1 + below(r, 3) * below(r, 2);
  for (let round = 0; round < rounds; round++) {
    const split = splitFile(bytes);
    const headerEnd = split ? bytes.length - split.data.length : Math.min(bytes.length, 8);
    switch (below(r, 8)) {
      case 0: { // flip header bytes (random bits, or characters that keep JSON plausible)
        if (headerEnd <= 8) break;
        const count = 1 + below(r, 4);
        for (let i = 0; i < count; i++) {
          const at = 8 + below(r, headerEnd - 8);
          bytes[at] = r() < 0.5
            ? bytes[at] ^ (1 + below(r, 255))
            : pick(r, [...'{}[]":,-.e0189 ']).charCodeAt(0);
        }
        done.push(`flip ${count} header byte(s)`);
        break;
      }
      case 1: { // flip data bytes
        if (bytes.length <= headerEnd) break;
        const at = headerEnd + below(r, bytes.length - headerEnd);
        bytes[at] ^= 1 + below(r, 255);
        done.push(`flip data byte ${at}`);
        break;
      }
      case 2: { // truncate
        const at = below(r, bytes.length + 1);
        bytes = bytes.slice(0, at);
        done.push(`truncate to ${at} bytes`);
        break;
      }
      case 3: { // rewrite the header length field
        if (bytes.length < 8) break;
        const n = new DataView(bytes.buffer).getBigUint64(0, true);
        const value = pick(r, [
          n + BigInt(1 + below(r, 16)),
          n - BigInt(1 + below(r, 16)),
          0n,
          1n,
          BigInt(bytes.length - 8),
          BigInt(bytes.length),
          BigInt(below(r, 2 ** 32)),
          100_000_000n,
          100_000_001n,
          2n ** 32n + n,
          2n ** 63n,
          2n ** 64n - 1n,
        ]);
        new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
        done.push(`header length = ${BigInt.asUintN(64, value)}`);
        break;
      }
      case 4:
      case 5: { // edit a value in the header's JSON
        const edit = split && editJson(r, split.header);
        if (!edit) break;
        bytes = joinFile(edit.header + " ".repeat(below(r, 8)), split.data);
        done.push(edit.what);
        break;
      }
      case 6: { // duplicated keys
        const edit = split && duplicateKey(r, split.header);
        if (!edit) break;
        bytes = joinFile(edit.header, split.data);
        done.push(edit.what);
        break;
      }
      default: { // grow or shrink the data section
        if (!split) break;
        const delta = below(r, 17) - 8;
        const data = new Uint8Array(Math.max(0, split.data.length + delta));
        data.set(split.data.subarray(0, data.length));
        bytes = joinFile(split.header, data);
        done.push(`data section ${delta >= 0 ? "+" : ""}${delta} bytes`);
      }
    }
  }
  return { bytes, what: done.length ? done.join(", ") : "unchanged" };
}

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

/** A device like createGpu's whose buffers and errors are counted. */
async function watchedDevice() {
  const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: (["shader-f16", "timestamp-query"] as GPUFeatureName[])
      .filter((f) => adapter.features.has(f)),
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    },
  });
  const live = new Map<GPUBuffer, string>();
  const errors: string[] = [];
  const create = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor) => {
    const b = create(descriptor);
    live.set(b, descriptor.label ?? "(no label)");
    const destroy = b.destroy.bind(b);
    b.destroy = () => {
      live.delete(b);
      destroy();
    };
    return b;
  };
  device.addEventListener("uncapturederror", (e) => {
    errors.push((e as GPUUncapturedErrorEvent).error.message);
  });
  return { device, live, errors };
}

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
