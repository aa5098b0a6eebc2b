// loadModel() and saveModel() (io/load.ts, io/save.ts): the round trip is bit-exact; every kind
// of bad folder is refused with a typed error that names the file (and the tensor) and leaves no
// GPU buffer behind; heads load from a second folder; tokenizer, EOS ids, file: and http: URLs.
import assert from "node:assert/strict";
import { join } from "node:path";
import { AbortedError, CheckpointError, TokenizerError } from "../gpu/errors.ts";
import { forward } from "../heads/forward.ts";
import { allocateModel, createModel, type Model } from "../heads/model.ts";
import { loadModel, type LoadModelOptions, type LoadProgress } from "../io/load.ts";
import { saveModel } from "../io/save.ts";
import { openCheckpoint, type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import type { ModelConfigInput } from "../model/config.ts";
import { randomTokens, tiny, type WatchedDevice, watchedDevice } from "./helpers.ts";

const PROMPT = randomTokens(11, 67, 5);
const TOKENIZER = new URL("./fixtures/tokenizers/tiny/", import.meta.url);

// ---------------------------------------------------------------------------------------------
// A device that counts its buffers

let shared: Promise<WatchedDevice> | null = null;
/** The test file's watched device (created once). */
function watched(): Promise<WatchedDevice> {
  shared ??= watchedDevice();
  return shared;
}

function assertNothingLeft(w: WatchedDevice, where: string): void {
  assert.deepEqual([...w.live.values()], [], `${where}: GPU buffers were left behind`);
  assert.deepEqual(w.errors, [], `${where}: the device reported errors`);
}

// ---------------------------------------------------------------------------------------------
// Folders and files

const temps: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "load_test_" });
  temps.push(dir);
  return dir;
}
globalThis.addEventListener("unload", () => {
  for (const dir of temps) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // already removed
    }
  }
});

/** Runs `fn` in a fresh temporary folder, removed afterwards. */
async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "load_test_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Escapes a string for use in a RegExp. */
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A safetensors file split into its parsed header and its data section. */
function splitFile(bytes: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return {
    header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))),
    data: bytes.subarray(8 + n),
  };
}

function joinFile(header: Record<string, unknown> | string, data: Uint8Array): Uint8Array {
  const text = new TextEncoder().encode(
    typeof header === "string" ? header : JSON.stringify(header),
  );
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };

/** Every tensor of a saved folder, by name, as writeSafetensors takes them. */
async function tensorsIn(dir: string): Promise<TensorToWrite[]> {
  const ckpt = await openCheckpoint(dir);
  try {
    const out: TensorToWrite[] = [];
    for (const t of ckpt.tensors.values()) {
      out.push({
        name: t.name,
        dtype: t.dtype as "F32" | "F16",
        shape: t.shape,
        data: await ckpt.read(t.name),
      });
    }
    return out;
  } finally {
    ckpt.close();
  }
}

async function readJsonFile(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

async function writeJsonFile(path: string, json: unknown): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(json, null, 2));
}

async function copyFolder(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isFile) await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

/** Creates a seeded model, saves it to a new folder; returns the folder and its logits. */
async function savedModel(
  config: ModelConfigInput,
  seed = 1,
): Promise<{ dir: string; logits: Float32Array[]; model: Model }> {
  const model = await createModel(config, { seed });
  const dir = await tempDir();
  await saveModel(model, dir);
  return { dir, logits: await forward(model, PROMPT), model };
}

/** The folder the bad-input tests start from: tiny, f32, two heads; its logits. */
let base: Promise<{ dir: string; logits: Float32Array[] }> | null = null;
function baseFolder(): Promise<{ dir: string; logits: Float32Array[] }> {
  base ??= savedModel(tiny({ nFuture: 2 }), 9).then(({ dir, logits, model }) => {
    model.dispose();
    return { dir, logits };
  });
  return base;
}

/** A copy of the base folder, with model.safetensors and config.json changed by `edit`. */
async function brokenFolder(
  edit: (files: { st: Uint8Array; config: Record<string, unknown> }) => {
    st?: Uint8Array;
    config?: Record<string, unknown> | string | null;
  } | void,
): Promise<{ dir: string; st: string; config: string }> {
  const { dir: from } = await baseFolder();
  const dir = await tempDir();
  await copyFolder(from, dir);
  const st = join(dir, "model.safetensors");
  const config = join(dir, "config.json");
  const changed = edit({
    st: await Deno.readFile(st),
    config: await readJsonFile(config),
  }) ?? {};
  if (changed.st) await Deno.writeFile(st, changed.st);
  if (changed.config === null) await Deno.remove(config);
  else if (typeof changed.config === "string") await Deno.writeTextFile(config, changed.config);
  else if (changed.config) await writeJsonFile(config, changed.config);
  return { dir, st, config };
}

/** Edits the JSON header of a safetensors file (the data section is kept). */
function editHeader(
  st: Uint8Array,
  fn: (h: Record<string, Entry>) => void,
): Uint8Array {
  const { header, data } = splitFile(st);
  fn(header as Record<string, Entry>);
  return joinFile(header, data);
}

/**
 * Loads `dir` on the watched device and expects `errorClass` with a message matching every
 * pattern; then checks that the load left no buffer behind.
 */
async function refused(
  dir: string | URL,
  errorClass: new (...args: never[]) => Error,
  patterns: RegExp[],
  options: LoadModelOptions = {},
): Promise<void> {
  const w = await watched();
  const warnings: string[] = [];
  await assert.rejects(
    () =>
      loadModel(dir, { device: w.device, onWarning: (m) => warnings.push(m), ...options }).then(
        (m) => {
          m.dispose();
          return m;
        },
      ),
    (e: unknown) => {
      assert.ok(e instanceof errorClass, `expected a ${errorClass.name}, got ${e}`);
      for (const p of patterns) assert.match(e.message, p);
      return true;
    },
  );
  await w.device.queue.onSubmittedWorkDone();
  assertNothingLeft(w, String(dir));
}

// ---------------------------------------------------------------------------------------------
// 1. Round trip

const roundTrips: [string, Partial<ModelConfigInput>][] = [
  ["f32, transformer heads, nFuture 3", {}],
  ["f16, transformer heads, nFuture 3", { dtype: "f16" }],
  ["f32, medusa heads, nFuture 3", { headKind: "medusa" }],
  ["f16, medusa heads, tied embeddings", { headKind: "medusa", dtype: "f16", tieEmbeddings: true }],
  ["f32, transformer heads, tied embeddings", { tieEmbeddings: true }],
  ["f32, nFuture 1", { nFuture: 1 }],
  ["f16, nFuture 1, tied embeddings", { nFuture: 1, dtype: "f16", tieEmbeddings: true }],
  ["f32, medusa heads, nFuture 2", { headKind: "medusa", nFuture: 2 }],
  ["f32, sequential MTP modules, MiMo layout", { headKind: "sequential" }],
  ["f16, sequential MTP modules, DeepSeek layout, 4 drafts", {
    headKind: "sequential",
    mtpLayout: "deepseek",
    mtpDepth: 4,
    dtype: "f16",
  }],
  ["llama3 RoPE scaling, another theta and eps, q/k/v and o biases, q/k norms", {
    ropeTheta: 500000,
    normEps: 1e-6,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositions: 32,
    },
    qkvBias: true,
    oBias: true,
    qkNorm: true,
  }],
];

for (const [what, change] of roundTrips) {
  Deno.test(`saveModel() then loadModel() gives bitwise-equal logits and a byte-identical re-save: ${what}`, async () => {
    const { dir, logits, model } = await savedModel(tiny(change), 3);
    const warnings: string[] = [];
    const loaded = await loadModel(dir, { onWarning: (m) => warnings.push(m) });
    try {
      assert.deepEqual(warnings, []);
      assert.deepEqual(loaded.config, model.config);
      const again = await forward(loaded, PROMPT);
      assert.equal(again.length, model.config.nFuture);
      for (let h = 0; h < again.length; h++) assert.deepEqual(again[h], logits[h], `head ${h + 1}`);
      // Saved again, the loaded model gives the same files.
      const dir2 = await tempDir();
      await saveModel(loaded, dir2);
      assert.deepEqual(
        await Deno.readFile(join(dir2, "model.safetensors")),
        await Deno.readFile(join(dir, "model.safetensors")),
      );
      assert.deepEqual(
        await readJsonFile(join(dir2, "config.json")),
        await readJsonFile(join(dir, "config.json")),
      );
      // Nothing else was written (no temporary files left over).
      const names = [];
      for await (const e of Deno.readDir(dir2)) names.push(e.name);
      assert.deepEqual(names.sort(), ["config.json", "model.safetensors"]);
    } finally {
      model.dispose();
      loaded.dispose();
    }
  });
}

Deno.test("loadModel() reports progress for every tensor, ending at the total bytes", async () => {
  const { dir } = await baseFolder();
  const w = await watched();
  const progress: LoadProgress[] = [];
  const model = await loadModel(dir, { device: w.device, onProgress: (p) => progress.push(p) });
  try {
    const shapes = model.tensorShapes();
    assert.equal(progress.length, shapes.length);
    assert.deepEqual(progress.map((p) => p.name), shapes.map(([n]) => n));
    const total = shapes.reduce((s, [, shape]) => s + 4 * shape.reduce((a, b) => a * b, 1), 0);
    const last = progress[progress.length - 1];
    assert.deepEqual(
      { bytes: last.bytes, totalBytes: last.totalBytes, tensors: last.tensors },
      { bytes: total, totalBytes: total, tensors: shapes.length },
    );
    assert.ok(progress.every((p, i) => p.tensors === i + 1 && p.totalTensors === shapes.length));
  } finally {
    model.dispose();
  }
  assertNothingLeft(w, dir);
});

Deno.test("loadModel() reads a sharded checkpoint (model.safetensors.index.json) into the same logits", async () => {
  const { dir, logits } = await baseFolder();
  const sharded = await tempDir();
  await Deno.copyFile(join(dir, "config.json"), join(sharded, "config.json"));
  const tensors = await tensorsIn(dir);
  const half = Math.floor(tensors.length / 2);
  const names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
  // The second shard first in the file list: the index decides where each tensor is.
  await writeSafetensors(join(sharded, names[0]), tensors.slice(half));
  await writeSafetensors(join(sharded, names[1]), tensors.slice(0, half));
  await writeJsonFile(join(sharded, "model.safetensors.index.json"), {
    metadata: { total_size: tensors.reduce((s, t) => s + t.data.byteLength, 0) },
    weight_map: Object.fromEntries(tensors.map((t, i) => [t.name, names[i < half ? 1 : 0]])),
  });
  const model = await loadModel(sharded);
  try {
    assert.deepEqual(await forward(model, PROMPT), logits);
  } finally {
    model.dispose();
  }
});

Deno.test("loadModel() loads a bf16 checkpoint as f16 by default and as f32 when asked", async () => {
  const { dir } = await baseFolder();
  const bf = await tempDir();
  const config = await readJsonFile(join(dir, "config.json"));
  delete config.dtype;
  await writeJsonFile(join(bf, "config.json"), { ...config, torch_dtype: "bfloat16" });
  // bf16: the top 16 bits of each f32.
  const tensors = (await tensorsIn(dir)).map((t) => {
    const words = new Uint32Array(new Uint8Array(t.data as Uint8Array).buffer);
    return { ...t, dtype: "BF16" as const, data: Uint16Array.from(words, (w) => w >>> 16) };
  });
  await writeSafetensors(join(bf, "model.safetensors"), tensors);
  for (const dtype of ["f16", "f32"] as const) {
    const loaded = await loadModel(bf, dtype === "f32" ? { dtype } : {});
    // The same bytes given to setTensor on a model of that type.
    const expected = await allocateModel({ ...tiny({ nFuture: 2 }), dtype });
    try {
      assert.equal(loaded.config.dtype, dtype);
      for (const t of tensors) {
        const d = t.data as Uint16Array;
        expected.setTensor(t.name, {
          dtype: "bf16",
          bytes: new Uint8Array(d.buffer, d.byteOffset, d.byteLength),
        });
      }
      assert.deepEqual(await forward(loaded, PROMPT), await forward(expected, PROMPT));
    } finally {
      loaded.dispose();
      expected.dispose();
    }
  }
});

// ---------------------------------------------------------------------------------------------
// 3. Bad input

Deno.test("loadModel() refuses a truncated safetensors file with a CheckpointError naming it and a tensor", async () => {
  const f = await brokenFolder(({ st }) => ({ st: st.slice(0, st.length - 100) }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: tensor "[^"]+": data_offsets`),
    /truncated/,
  ]);
});

Deno.test("loadModel() refuses a safetensors file cut inside its header length with a CheckpointError naming it", async () => {
  const f = await brokenFolder(({ st }) => ({ st: st.slice(0, 5) }));
  await refused(f.dir, CheckpointError, [new RegExp(`^${esc(f.st)}: `), /fewer than the 8/]);
});

Deno.test("loadModel() refuses a header length beyond the file with a CheckpointError naming it", async () => {
  const f = await brokenFolder(({ st }) => {
    const out = st.slice();
    new DataView(out.buffer).setBigUint64(0, BigInt(out.length), true);
    return { st: out };
  });
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: `),
    /header length field says \d+ bytes, beyond the end of the file/,
  ]);
});

Deno.test("loadModel() refuses a header that is not JSON with a CheckpointError naming the file", async () => {
  const f = await brokenFolder(({ st }) => {
    const out = st.slice();
    out[8] = "x".charCodeAt(0);
    return { st: out };
  });
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: `),
    /the header is not valid JSON/,
  ]);
});

Deno.test("loadModel() refuses tensor offsets beyond the data with a CheckpointError naming the file and tensor", async () => {
  const f = await brokenFolder(({ st }) => ({
    st: editHeader(st, (h) => {
      const [b, e] = h["model.norm.weight"].data_offsets;
      h["model.norm.weight"].data_offsets = [b + 1_000_000, e + 1_000_000];
    }),
  }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: tensor "model\\.norm\\.weight": data_offsets`),
    /end beyond the data section/,
  ]);
});

Deno.test("loadModel() refuses overlapping tensors with a CheckpointError naming the file and both tensors", async () => {
  const f = await brokenFolder(({ st }) => ({
    st: editHeader(st, (h) => {
      const a = h["model.layers.0.input_layernorm.weight"].data_offsets;
      h["model.layers.0.post_attention_layernorm.weight"].data_offsets = [a[0] + 8, a[1] + 8];
    }),
  }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: tensors `),
    /model\.layers\.0\.input_layernorm\.weight/,
    /model\.layers\.0\.post_attention_layernorm\.weight/,
    /overlap/,
  ]);
});

Deno.test("loadModel() refuses an unknown dtype with a CheckpointError naming the file and tensor", async () => {
  const f = await brokenFolder(({ st }) => ({
    st: editHeader(st, (h) => {
      h["model.layers.1.mlp.down_proj.weight"].dtype = "F128";
    }),
  }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: tensor "model\\.layers\\.1\\.mlp\\.down_proj\\.weight"`),
    /unknown dtype "F128"/,
  ]);
});

Deno.test("loadModel() refuses a weight stored as I32 with a CheckpointError naming the file and tensor", async () => {
  const f = await brokenFolder(({ st }) => ({
    st: editHeader(st, (h) => {
      h["model.norm.weight"].dtype = "I32";
    }),
  }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: tensor model\\.norm\\.weight is I32`),
    /must be F32, F16 or BF16/,
  ]);
});

Deno.test("loadModel() refuses a tensor whose shape disagrees with the config, naming the file, tensor and both shapes", async () => {
  const f = await brokenFolder(({ st }) => ({
    st: editHeader(st, (h) => {
      h["model.norm.weight"].shape = [4, 6];
    }),
  }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: tensor model\\.norm\\.weight has shape \\[4,6\\]`),
    /the config needs \[24\]/,
  ]);
});

Deno.test("loadModel() refuses a config.json whose sizes disagree with the tensors, naming the tensor", async () => {
  const f = await brokenFolder(({ config }) => ({ config: { ...config, hidden_size: 32 } }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.st)}: tensor model\\.embed_tokens\\.weight has shape \\[67,24\\]`),
    /the config needs \[67,32\]/,
  ]);
});

Deno.test("loadModel() refuses a checkpoint missing a tensor with a CheckpointError naming the folder and tensor", async () => {
  const f = await brokenFolder(({ st }) => ({
    st: editHeader(st, (h) => {
      delete h["model.layers.1.mlp.up_proj.weight"];
    }),
  }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.dir)}/?: 1 tensor\\(s\\) the config needs are missing`),
    /model\.layers\.1\.mlp\.up_proj\.weight/,
  ]);
});

Deno.test("loadModel() refuses a folder without model.safetensors with a CheckpointError naming the folder", async () => {
  const f = await brokenFolder(() => {});
  await Deno.remove(f.st);
  await refused(f.dir, CheckpointError, [new RegExp(esc(f.dir)), /no checkpoint found/]);
});

Deno.test("loadModel() loads a checkpoint with an unexpected extra tensor and warns, listing it", async () => {
  const { logits } = await baseFolder();
  const f = await brokenFolder(() => {});
  const tensors = await tensorsIn(f.dir);
  tensors.splice(3, 0, {
    name: "model.layers.0.self_attn.rotary_emb.inv_freq",
    dtype: "F32",
    shape: [4],
    data: Float32Array.of(1, 0.1, 0.01, 0.001),
  });
  await writeSafetensors(f.st, tensors);
  const w = await watched();
  const warnings: string[] = [];
  const model = await loadModel(f.dir, { device: w.device, onWarning: (m) => warnings.push(m) });
  try {
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /1 tensor\(s\) in the checkpoint are not used/);
    assert.match(warnings[0], /model\.layers\.0\.self_attn\.rotary_emb\.inv_freq/);
    assert.deepEqual(await forward(model, PROMPT), logits);
  } finally {
    model.dispose();
  }
  assertNothingLeft(w, f.dir);
});

Deno.test("loadModel() refuses a folder without config.json with a CheckpointError naming the folder", async () => {
  const f = await brokenFolder(() => ({ config: null }));
  await refused(f.dir, CheckpointError, [new RegExp(esc(f.dir)), /no config\.json/]);
});

Deno.test("loadModel() refuses a config.json missing a field with a CheckpointError naming the file and field", async () => {
  const f = await brokenFolder(({ config }) => {
    delete config.num_hidden_layers;
    return { config };
  });
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.config)}: num_hidden_layers is missing`),
  ]);
});

Deno.test("loadModel() refuses a config.json that is not JSON with a CheckpointError naming it", async () => {
  const f = await brokenFolder(() => ({ config: '{ "model_type": "llama", ' }));
  await refused(f.dir, CheckpointError, [new RegExp(`^${esc(f.config)}: not valid JSON`)]);
});

Deno.test("loadModel() refuses a config.json that is not an object with a CheckpointError naming it", async () => {
  const f = await brokenFolder(() => ({ config: "[1, 2]" }));
  await refused(f.dir, CheckpointError, [
    new RegExp(`^${esc(f.config)}: config\\.json must hold a JSON object, got an array of 2`),
  ]);
});

// A value config.json allows but the model cannot take is the checkpoint's error, naming its key.
Deno.test("loadModel() refuses a config.json value the model cannot take (hidden_size 20) with a CheckpointError naming the file", async () => {
  const f = await brokenFolder(({ config }) => ({ config: { ...config, hidden_size: 20 } }));
  await refused(f.dir, CheckpointError, [new RegExp(`^${esc(f.config)}: `), /20/]);
});

Deno.test("loadModel() refuses a tokenizer.json that does not parse with a TokenizerError naming it, leaving nothing on the GPU", async () => {
  const f = await brokenFolder(() => {});
  const path = join(f.dir, "tokenizer.json");
  await Deno.writeTextFile(path, '{ "model": { "type": "BPE", ');
  await refused(f.dir, TokenizerError, [new RegExp(esc(path)), /not valid JSON/]);
  // Without the tokenizer, the same folder loads.
  const w = await watched();
  const model = await loadModel(f.dir, { device: w.device, tokenizer: false });
  assert.equal(model.tokenizer, null);
  model.dispose();
  assertNothingLeft(w, f.dir);
});

Deno.test("loadModel() aborted mid-load rejects with an AbortedError and leaves nothing on the GPU", async () => {
  const { dir } = await baseFolder();
  const controller = new AbortController();
  let seen = 0;
  await refused(dir, AbortedError, [/was aborted/], {
    signal: controller.signal,
    onProgress: () => {
      if (++seen === 3) controller.abort();
    },
  });
  assert.equal(seen, 3, "no tensor was loaded after the abort");
  // Aborted before it starts.
  await refused(dir, AbortedError, [/was aborted/], { signal: AbortSignal.abort() });
});

Deno.test("loadModel() rejects with an AbortedError whatever the signal's reason (AbortSignal.timeout, a custom reason)", async () => {
  const { dir } = await baseFolder();
  const timeout = AbortSignal.timeout(1);
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(timeout.aborted);
  await refused(dir, AbortedError, [/was aborted/], { signal: timeout });
  await refused(dir, AbortedError, [/was aborted/], {
    signal: AbortSignal.abort(new Error("the user closed the tab")),
  });
});

// Models made and freed on one shared device must not pile up listeners on it.
Deno.test("loadModel() then dispose() leaves no event listener on a shared device", async () => {
  const { dir } = await baseFolder();
  const w = await watched();
  const before = w.listeners();
  for (let i = 0; i < 3; i++) (await loadModel(dir, { device: w.device })).dispose();
  assert.equal(w.listeners(), before, "uncapturederror listeners left on the device");
  assertNothingLeft(w, dir);
});

// ---------------------------------------------------------------------------------------------
// 4. Heads from a second folder

/**
 * Splits a saved model's folder into a base folder (trunk tensors, config.json whose ahead
 * section says nFuture 1) and a heads folder written by `heads`.
 */
async function splitHeads(
  dir: string,
  isHead: (name: string) => boolean,
): Promise<{ baseDir: string; headsDir: string; heads: TensorToWrite[] }> {
  const tensors = await tensorsIn(dir);
  const baseDir = await tempDir();
  const headsDir = await tempDir();
  await writeSafetensors(
    join(baseDir, "model.safetensors"),
    tensors.filter((t) => !isHead(t.name)),
  );
  const config = await readJsonFile(join(dir, "config.json"));
  await writeJsonFile(join(baseDir, "config.json"), {
    ...config,
    ahead: { ...(config.ahead as object), nFuture: 1 },
  });
  return { baseDir, headsDir, heads: tensors.filter((t) => isHead(t.name)) };
}

for (const naming of ["Medusa's own naming (0.0.linear.weight)", "medusa_head.* naming"]) {
  Deno.test(`loadModel(base, { heads }) loads Medusa heads from a second folder in ${naming}: the same logits`, async () => {
    const { dir, logits, model } = await savedModel(tiny({ headKind: "medusa" }), 4);
    model.dispose();
    const { baseDir, headsDir, heads } = await splitHeads(
      dir,
      (n) => n.startsWith("medusa_head."),
    );
    assert.deepEqual(heads.map((t) => t.name), [
      "medusa_head.0.0.linear.weight",
      "medusa_head.0.0.linear.bias",
      "medusa_head.1.0.linear.weight",
      "medusa_head.1.0.linear.bias",
    ]);
    const own = naming.startsWith("Medusa's own");
    await writeSafetensors(
      join(headsDir, "model.safetensors"),
      heads.map((t) => ({ ...t, name: own ? t.name.slice("medusa_head.".length) : t.name })),
    );
    await writeJsonFile(join(headsDir, "config.json"), {
      medusa_num_heads: 2,
      medusa_num_layers: 1,
      base_model_name_or_path: "ahead/tiny",
    });
    // The base folder alone is a one-head model.
    const alone = await loadModel(baseDir);
    assert.equal(alone.config.nFuture, 1);
    assert.deepEqual(await forward(alone, PROMPT), [logits[0]]);
    alone.dispose();
    const warnings: string[] = [];
    const loaded = await loadModel(baseDir, {
      heads: headsDir,
      onWarning: (m) => warnings.push(m),
    });
    try {
      assert.deepEqual(warnings, []);
      assert.equal(loaded.config.nFuture, 3);
      assert.equal(loaded.config.headKind, "medusa");
      assert.deepEqual(await forward(loaded, PROMPT), logits);
    } finally {
      loaded.dispose();
    }
  });
}

Deno.test("loadModel(base, { heads }) loads ahead's transformer heads (mtp_heads.*) from a second folder: the same logits", async () => {
  const { dir, logits, model } = await savedModel(tiny(), 6);
  model.dispose();
  const { baseDir, headsDir, heads } = await splitHeads(dir, (n) => n.startsWith("mtp_heads."));
  assert.ok(heads.length > 0);
  await writeSafetensors(join(headsDir, "model.safetensors"), heads);
  await writeJsonFile(join(headsDir, "config.json"), {
    ahead: { nFuture: 3, headKind: "transformer" },
  });
  const loaded = await loadModel(baseDir, { heads: headsDir });
  try {
    assert.equal(loaded.config.nFuture, 3);
    assert.deepEqual(await forward(loaded, PROMPT), logits);
  } finally {
    loaded.dispose();
  }
});

Deno.test("loadModel(base, { heads }) refuses medusa_num_layers 2 with a CheckpointError naming it", async () => {
  const { dir, model } = await savedModel(tiny({ headKind: "medusa" }), 4);
  model.dispose();
  const { baseDir, headsDir, heads } = await splitHeads(
    dir,
    (n) => n.startsWith("medusa_head."),
  );
  await writeSafetensors(join(headsDir, "model.safetensors"), heads);
  const config = join(headsDir, "config.json");
  await writeJsonFile(config, { medusa_num_heads: 2, medusa_num_layers: 2 });
  await refused(baseDir, CheckpointError, [
    new RegExp(`^${esc(config)}: medusa_num_layers = 2 is not supported`),
  ], { heads: headsDir });
  // A heads folder without config.json.
  await Deno.remove(config);
  await refused(baseDir, CheckpointError, [new RegExp(esc(headsDir)), /no config\.json/], {
    heads: headsDir,
  });
});

// Real Medusa heads have their own unembedding, `{i}.1.weight` [vocab, hidden]: the loader sets
// headsOwnUnembedding when it finds them, and the heads must draft with them, not with lm_head.
Deno.test("loadModel(base, { heads }) with Medusa heads that own their unembedding ({i}.1.weight) uses those matrices", async () => {
  const { dir, logits, model } = await savedModel(tiny({ headKind: "medusa" }), 4);
  model.dispose();
  const { baseDir, headsDir, heads } = await splitHeads(
    dir,
    (n) => n.startsWith("medusa_head."),
  );
  const lmHead = (await tensorsIn(dir)).find((t) => t.name === "lm_head.weight")!;
  // Each head's own unembedding is twice the trunk's: its logits must double, exactly.
  const doubled = new Float32Array(new Uint8Array(lmHead.data as Uint8Array).buffer).map((v) =>
    2 * v
  );
  const files: TensorToWrite[] = heads.map((t) => ({
    ...t,
    name: t.name.slice("medusa_head.".length),
  }));
  for (const j of [0, 1]) {
    files.push({ name: `${j}.1.weight`, dtype: "F32", shape: lmHead.shape, data: doubled });
  }
  await writeSafetensors(join(headsDir, "model.safetensors"), files);
  await writeJsonFile(join(headsDir, "config.json"), { medusa_num_heads: 2 });
  const warnings: string[] = [];
  const loaded = await loadModel(baseDir, { heads: headsDir, onWarning: (m) => warnings.push(m) });
  try {
    assert.equal(loaded.config.headsOwnUnembedding, true);
    assert.deepEqual(warnings, [], "no tensor of the heads folder is left unused");
    const got = await forward(loaded, PROMPT);
    assert.deepEqual(got[0], logits[0]);
    for (const h of [1, 2]) {
      const worst = got[h].reduce((m, v, i) => Math.max(m, Math.abs(v - 2 * logits[h][i])), 0);
      const scale = logits[h].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      assert.ok(worst <= 1e-5 * scale, `head ${h + 1}: off by ${worst} (logits up to ${scale})`);
    }
  } finally {
    loaded.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// 5. Tokenizer, EOS ids, URLs

/** A saved model whose vocabulary covers the tiny tokenizer, with its files and an eos id. */
async function modelWithTokenizer(): Promise<{ dir: string; logits: Float32Array[] }> {
  const tok = await loadTokenizer(TOKENIZER);
  const { dir, logits, model } = await savedModel(tiny({ vocabSize: tok.vocabSize + 3 }), 8);
  model.dispose();
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(new URL(f, TOKENIZER), join(dir, f));
  }
  const config = await readJsonFile(join(dir, "config.json"));
  await writeJsonFile(join(dir, "config.json"), { ...config, eos_token_id: [5, 9] });
  return { dir, logits };
}

Deno.test("loadModel() sets the tokenizer and the EOS ids of config.json and the tokenizer", async () => {
  const tok = await loadTokenizer(TOKENIZER);
  assert.ok(tok.eosIds.length > 0);
  const { dir } = await modelWithTokenizer();
  const w = await watched();
  const model = await loadModel(dir, { device: w.device });
  try {
    assert.ok(model.tokenizer);
    assert.equal(model.tokenizer.vocabSize, tok.vocabSize);
    assert.deepEqual(model.tokenizer.encode("hello world"), tok.encode("hello world"));
    assert.deepEqual(
      [...model.eosIds].sort((a, b) => a - b),
      [...new Set([5, 9, ...tok.eosIds])].sort((a, b) => a - b),
    );
  } finally {
    model.dispose();
  }
  const without = await loadModel(dir, { device: w.device, tokenizer: false });
  try {
    assert.equal(without.tokenizer, null);
    assert.deepEqual([...without.eosIds].sort((a, b) => a - b), [5, 9]);
  } finally {
    without.dispose();
  }
  assertNothingLeft(w, dir);
});

Deno.test("loadModel() warns when the tokenizer has more ids than the model", async () => {
  const tok = await loadTokenizer(TOKENIZER);
  const { dir } = await modelWithTokenizer();
  const config = await readJsonFile(join(dir, "config.json"));
  // A model of 67 ids with the same folder's tokenizer.
  const small = await savedModel(tiny(), 8);
  small.model.dispose();
  await Deno.copyFile(join(dir, "tokenizer.json"), join(small.dir, "tokenizer.json"));
  await Deno.copyFile(join(dir, "tokenizer_config.json"), join(small.dir, "tokenizer_config.json"));
  const smallConfig = await readJsonFile(join(small.dir, "config.json"));
  await writeJsonFile(join(small.dir, "config.json"), {
    ...smallConfig,
    eos_token_id: config.eos_token_id,
  });
  const warnings: string[] = [];
  const model = await loadModel(small.dir, { onWarning: (m) => warnings.push(m) });
  try {
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0],
      new RegExp(`the tokenizer has ${tok.vocabSize} ids but the model only 67`),
    );
    // Every EOS id is inside the model's vocabulary.
    assert.ok(model.eosIds.every((id) => id < 67));
  } finally {
    model.dispose();
  }
});

Deno.test("saveModel() of a model loaded from a local folder keeps its tokenizer files and EOS ids", async () => {
  const { dir, logits } = await modelWithTokenizer();
  const model = await loadModel(dir);
  const dir2 = await tempDir();
  try {
    await saveModel(model, dir2);
    const again = await loadModel(dir2);
    try {
      assert.deepEqual(await forward(again, PROMPT), logits);
      assert.deepEqual([...again.eosIds].sort(), [...model.eosIds].sort());
      assert.ok(again.tokenizer, "the saved folder has a tokenizer");
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
        assert.equal(
          await Deno.readTextFile(join(dir2, f)),
          await Deno.readTextFile(join(dir, f)),
          f,
        );
      }
    } finally {
      again.dispose();
    }
  } finally {
    model.dispose();
  }
});

Deno.test("loadModel() takes a file: URL, with or without its trailing slash", async () => {
  const { dir, logits } = await modelWithTokenizer();
  for (const url of [new URL(`file://${dir}`), new URL(`file://${dir}/`)]) {
    const model = await loadModel(url);
    try {
      assert.deepEqual(await forward(model, PROMPT), logits, url.href);
      assert.ok(model.tokenizer, url.href);
    } finally {
      model.dispose();
    }
  }
});

// "#", "?" and "%" are characters of the path, not a URL's fragment, query or escape.
Deno.test("loadModel() reads a folder whose path holds '#', '?' and '%' (and not its parent's files)", async () => {
  await withTempDir(async (root) => {
    // The parent folder holds another model: reading it instead must not go unnoticed.
    const decoy = await createModel(tiny({ nFuture: 1 }), { seed: 20 });
    await saveModel(decoy, root);
    decoy.dispose();
    for (const name of ["model #1", "what?", "100% done"]) {
      const dir = join(root, name);
      const model = await createModel(tiny({ nFuture: 1 }), { seed: 21 });
      await saveModel(model, dir);
      const logits = await forward(model, PROMPT);
      model.dispose();
      const loaded = await loadModel(dir).catch((e) => e);
      assert.ok(!(loaded instanceof Error), `${name}: ${loaded}`);
      try {
        assert.deepEqual(await forward(loaded, PROMPT), logits, name);
      } finally {
        loaded.dispose();
      }
    }
  });
});

/** Serves the files of `root` on 127.0.0.1 with Range support; logs each request. */
function serve(root: string) {
  const log: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const name = decodeURIComponent(new URL(request.url).pathname.slice(1));
    const range = request.headers.get("range");
    log.push(`${name} ${range ?? "whole"}`);
    let body: Uint8Array<ArrayBuffer>;
    try {
      body = await Deno.readFile(join(root, name));
    } catch {
      return new Response("not found", { status: 404 });
    }
    const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? "");
    if (m === null) return new Response(body);
    const start = Number(m[1]);
    const end = Math.min(m[2] === "" ? body.length - 1 : Number(m[2]), body.length - 1);
    if (start >= body.length) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${body.length}` },
      });
    }
    return new Response(body.slice(start, end + 1), {
      status: 206,
      headers: { "content-range": `bytes ${start}-${end}/${body.length}` },
    });
  });
  return { base: `http://127.0.0.1:${server.addr.port}/`, log, server };
}

Deno.test("loadModel() loads an http: URL with range requests: the same logits, tokenizer and EOS ids", async () => {
  const { dir, logits } = await modelWithTokenizer();
  const local = await loadModel(dir, { tokenizer: true });
  const { base, log, server } = serve(dir);
  try {
    const model = await loadModel(new URL(`${base}`));
    try {
      assert.deepEqual(await forward(model, PROMPT), logits);
      assert.ok(model.tokenizer);
      assert.deepEqual(model.eosIds, local.eosIds);
      assert.ok(
        log.some((l) => /^model\.safetensors bytes=\d+-\d+$/.test(l)),
        `range requests were made: ${log.join("; ")}`,
      );
    } finally {
      model.dispose();
    }
  } finally {
    local.dispose();
    await server.shutdown();
  }
});

Deno.test("loadModel() refuses an http: folder without config.json with a CheckpointError naming the URL", async () => {
  const { dir } = await baseFolder();
  const { base, server } = serve(dir);
  try {
    const w = await watched();
    const url = new URL(`${base}nothing/here/`);
    await assert.rejects(() => loadModel(url, { device: w.device }), (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `got ${e}`);
      assert.match(e.message, new RegExp(`^${esc(url.href)}: no config\\.json`));
      return true;
    });
    assertNothingLeft(w, url.href);
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadModel() takes an http: URL given as a string", async () => {
  const { dir, logits } = await baseFolder();
  const { base, server } = serve(dir);
  try {
    const model = await loadModel(base);
    try {
      assert.deepEqual(await forward(model, PROMPT), logits);
    } finally {
      model.dispose();
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadModel() of an http: URL with an aborted signal rejects with an AbortedError", async () => {
  const { dir } = await baseFolder();
  const { base, server } = serve(dir);
  try {
    await refused(new URL(base), AbortedError, [/was aborted/], { signal: AbortSignal.abort() });
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadModel() of an http: URL that cannot be reached rejects with a CheckpointError naming it", async () => {
  const { dir } = await baseFolder();
  const { base, server } = serve(dir);
  await server.shutdown();
  const w = await watched();
  await assert.rejects(() => loadModel(new URL(base), { device: w.device }), (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected a CheckpointError, got ${e}`);
    assert.match(e.message, new RegExp(esc(base)));
    return true;
  });
  assertNothingLeft(w, base);
});
