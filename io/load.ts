/**
 * Loading Hugging Face model folders: config.json, the safetensors weights (one file or
 * sharded), heads from the same folder or a second one (ahead's `mtp_heads.*`, Medusa's
 * `medusa_head.*`), tokenizer.json and the EOS ids. Tensors stream to the GPU one at a time, so
 * peak host memory stays near the largest tensor; every name, shape and dtype is checked before
 * anything is allocated; a failure leaves nothing behind.
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AbortedError, CheckpointError, ConfigError, describeValue } from "../gpu/errors.ts";
import { allocateModel, type Model } from "../heads/model.ts";
import { parseConfig, tensorShapes } from "../heads/registry.ts";
import { HF_CONFIG_KEYS, type ModelConfig, type ModelConfigInput } from "../model/config.ts";
import { readHfConfig } from "./hf_config.ts";
import {
  openCheckpoint,
  openSafetensors,
  type TensorInfo,
  type TensorSource,
} from "./safetensors.ts";
import { byteTokenizer, loadTokenizer } from "./tokenizer.ts";

/** How far a load is, for progress bars. */
export interface LoadProgress {
  /** Bytes of tensor data read so far. */
  bytes: number;
  /** Bytes of tensor data in all. */
  totalBytes: number;
  /** Tensors loaded so far. */
  tensors: number;
  /** Tensors in all. */
  totalTensors: number;
  /** The tensor just loaded. */
  name: string;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /**
   * Weight storage on the GPU. "q8" and "q4" quantize the matrices on the GPU as they load (an
   * ahead checkpoint saved quantized loads as it was saved, bit for bit). Default: a saved
   * quantized model's type, else f16 for f16/bf16 checkpoints and f32 for f32 ones.
   */
  dtype?: "f32" | "f16" | "q8" | "q4";
  /** KV cache storage. Default f16 for f16, q8 and q4 weights, f32 for f32 weights. */
  kvDtype?: "f32" | "f16";
  /** Longest sequence, prompt included. Default min(max_position_embeddings, 4096). */
  maxSeqLen?: number;
  /**
   * A folder (path or URL) holding heads 2..n for this base model: ahead's own (a config.json
   * with an `ahead` section and `mtp_heads.*` tensors) or Medusa's (`medusa_num_heads` in its
   * config.json, tensors `medusa_head.{i}.*` or `{i}.*`).
   */
  heads?: string | URL;
  /** A WebGPU device to use instead of requesting one. */
  device?: GPUDevice;
  /** Called after each tensor reaches the GPU. */
  onProgress?: (p: LoadProgress) => void;
  /** Called with warnings (extra tensors the model does not use). Default: console.warn. */
  onWarning?: (message: string) => void;
  /** Aborts the load; it rejects with an AbortedError and frees what it made. */
  signal?: AbortSignal;
  /** Load tokenizer.json (when the folder has one). Default true. */
  tokenizer?: boolean;
  /** Largest buffer a weight matrix may take before it is split (tests). */
  maxBindingBytes?: number;
  /**
   * Use the checkpoint's MTP modules (MiMo, or the DeepSeek-V3 layout on a supported trunk) as
   * draft heads. Default true; false loads the trunk alone (nothing to draft with).
   */
  mtp?: boolean;
  /**
   * Drafts per step with MTP modules, in [1, 7]; past the trained modules the last one drafts
   * again. Default: one per module.
   */
  mtpDepth?: number;
}

/** The folder as a URL ending in "/": paths resolve against the working directory. */
function locate(source: string | URL): URL {
  const u = source instanceof URL
    ? source
    : /^(https?|file):/i.test(source)
    ? new URL(source)
    : pathToFileURL(resolve(source));
  return new URL(u.href.endsWith("/") ? u.href : u.href + "/");
}

function show(u: URL): string {
  return u.protocol === "file:" ? fileURLToPath(u) : u.href;
}

/** The text of `name` in the folder, or undefined if it does not exist. */
async function readOptional(
  folder: URL,
  name: string,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const u = new URL(name, folder);
  if (u.protocol === "file:") {
    try {
      return await Deno.readTextFile(u);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw new CheckpointError(`${show(u)}: cannot be read: ${(e as Error).message}`);
    }
  }
  try {
    const r = await fetch(u, { signal });
    if (r.status === 404) {
      await r.body?.cancel();
      return undefined;
    }
    if (!r.ok) {
      await r.body?.cancel();
      throw new CheckpointError(`${show(u)}: HTTP ${r.status} ${r.statusText}`);
    }
    return await r.text();
  } catch (e) {
    if (signal?.aborted) throw new AbortedError(`reading ${show(u)} was aborted`);
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`${show(u)}: request failed: ${(e as Error).message}`);
  }
}

async function readJson(
  folder: URL,
  name: string,
  signal?: AbortSignal,
): Promise<unknown | undefined> {
  const text = await readOptional(folder, name, signal);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(
      `${show(new URL(name, folder))}: not valid JSON: ${(e as Error).message}`,
    );
  }
}

/** Heads config: ahead's section, or Medusa's medusa_num_heads / medusa_num_layers. */
function headsConfig(json: unknown, source: string): Partial<ModelConfigInput> {
  if (typeof json !== "object" || json === null) {
    throw new CheckpointError(
      `${source}: config.json must hold a JSON object, got ${describeValue(json)}`,
    );
  }
  const j = json as Record<string, unknown>;
  if (typeof j.ahead === "object" && j.ahead !== null) {
    const a = j.ahead as Record<string, unknown>;
    return {
      nFuture: a.nFuture as number,
      headKind: a.headKind as string,
      headsOwnUnembedding: a.headsOwnUnembedding as boolean,
      ...(a.mtpLayout !== undefined ? { mtpLayout: a.mtpLayout as "mimo" | "deepseek" } : {}),
      ...(a.mtpDepth !== undefined ? { mtpDepth: a.mtpDepth as number } : {}),
    };
  }
  if (j.medusa_num_heads !== undefined) {
    const layers = j.medusa_num_layers ?? 1;
    if (layers !== 1) {
      throw new CheckpointError(
        `${source}: medusa_num_layers = ${
          describeValue(layers)
        } is not supported: ahead's Medusa heads have one ResBlock`,
      );
    }
    if (!Number.isInteger(j.medusa_num_heads) || (j.medusa_num_heads as number) < 1) {
      throw new CheckpointError(
        `${source}: medusa_num_heads must be an integer >= 1, got ${
          describeValue(j.medusa_num_heads)
        }`,
      );
    }
    return { nFuture: (j.medusa_num_heads as number) + 1, headKind: "medusa" };
  }
  throw new CheckpointError(
    `${source}: this heads folder's config.json has neither an "ahead" section nor medusa_num_heads`,
  );
}

/**
 * A heads folder's tensors: model.safetensors (or a sharded index), or Medusa's own file name,
 * medusa_lm_head.safetensors.
 */
async function openHeads(folder: URL, signal?: AbortSignal): Promise<TensorSource> {
  const medusa = new URL("medusa_lm_head.safetensors", folder);
  const exists = async (u: URL) =>
    u.protocol === "file:"
      ? (await Deno.stat(u).catch(() => null)) !== null
      : (await readOptional(folder, u.pathname.split("/").pop()!, signal)) !== undefined;
  if (await exists(medusa)) return await openSafetensors(medusa, { signal });
  if (await exists(new URL("medusa_lm_head.pt", folder))) {
    throw new CheckpointError(
      `${show(folder)}: medusa_lm_head.pt is a PyTorch pickle, which ahead does not read; ` +
        `convert it: python3 -c "import torch; from safetensors.torch import save_file; ` +
        `save_file(torch.load('medusa_lm_head.pt'), 'medusa_lm_head.safetensors')"`,
    );
  }
  return await openCheckpoint(folder, { signal });
}

/** Medusa's own checkpoints name heads `{i}.{l}...`; the model's names are `medusa_head.{i}...`. */
function headName(name: string): string {
  return /^\d+\./.test(name) ? `medusa_head.${name}` : name;
}

const WEIGHT_DTYPES = new Set(["F32", "F16", "BF16"]);

/** Whether `name` belongs to MTP modules of any layout (the trunk has `nLayers` layers). */
function isMtpTensor(name: string, c: ModelConfig): boolean {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return name.startsWith("model.mtp_layers.") || name.startsWith("mtp.") ||
    (m !== null && Number(m[1]) >= c.nLayers);
}

/**
 * DeepSeek-layout modules carry copies of the shared embedding and unembedding
 * (`embed_tokens`, `shared_head.head`); ahead uses the trunk's, so they are not loaded.
 */
function isSharedCopy(name: string, c: ModelConfig): boolean {
  return c.headKind === "sequential" && c.mtpLayout === "deepseek" && !c.headsOwnUnembedding &&
    /^model\.layers\.\d+\.(embed_tokens|shared_head\.head)\.weight$/.test(name);
}

/**
 * The MTP modules' tensors against what config.json declares: Qwen3-Next naming, a config that
 * declares modules the weights do not hold, or a layout that is only partly there, each get an
 * error that says what to do.
 */
function checkMtpTensors(
  c: ModelConfig,
  declared: { layers: number; key: string; layout: string } | null,
  where: ReadonlyMap<string, unknown>,
  o: { folder: string; configFile: string },
): void {
  const names = [...where.keys()];
  if (names.some((n) => n.startsWith("mtp."))) {
    throw new CheckpointError(
      `${o.folder}: the weights hold MTP modules in Qwen3-Next / Qwen3.5 naming (mtp.fc, ` +
        `mtp.layers.*), whose trunk (Gated DeltaNet linear attention) ahead does not run`,
    );
  }
  if (c.headKind !== "sequential") return;
  const wanted = tensorShapes(c).map(([n]) => n).filter((n) => isMtpTensor(n, c));
  const present = wanted.filter((n) => where.has(n));
  const layout = c.mtpLayout === "mimo" ? "MiMo (model.mtp_layers.{i}.*)" : "DeepSeek-V3 " +
    `(model.layers.{${c.nLayers} + i}.{enorm, hnorm, eh_proj, shared_head.norm, ...})`;
  if (present.length === 0 && declared) {
    throw new CheckpointError(
      `${o.configFile}: ${declared.key} = ${declared.layers} declares MTP modules, but the ` +
        `weights in ${o.folder} hold none in the ${layout} layout (some releases ship the config ` +
        `without them): load with { mtp: false } to run the trunk alone, without drafts`,
    );
  }
  if (present.length < wanted.length) {
    const missing = wanted.filter((n) => !where.has(n));
    throw new CheckpointError(
      `${o.folder}: the MTP modules' ${layout} layout is only partly present: ` +
        `${missing.length} of its ${wanted.length} tensors are missing: ` +
        `${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`,
    );
  }
}

/** parseConfig, with its errors restated as the checkpoint's (naming config.json's keys). */
function configOf(input: ModelConfigInput, file: string): ModelConfig {
  try {
    return parseConfig(input);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    let msg = e.message.replace(/^Invalid model config: /, "");
    for (const [field, key] of Object.entries(HF_CONFIG_KEYS)) {
      if (key) msg = msg.replaceAll(new RegExp(`\\b${field}\\b`, "g"), `${key} (${field})`);
    }
    throw new CheckpointError(`${file}: the model cannot take this config: ${msg}`, { cause: e });
  }
}

/**
 * Loads a Hugging Face model folder onto the GPU: a path, or a `file:` or `https:` URL (so
 * `new URL("../models/x/", import.meta.url)` works from a checkout and from the published
 * package alike).
 *
 * @throws {CheckpointError} naming the file and the tensor for a malformed or mismatched
 * checkpoint (nothing is left on the GPU); {@link AbortedError} when the signal aborts.
 * @example
 * ```ts
 * import { complete, loadModel } from "@ahead/mtp";
 * const model = await loadModel("./models/SmolLM2-135M", { maxSeqLen: 1024 });
 * const { text } = await complete(model, "def fib(n):", { maxTokens: 64 });
 * console.log(text);
 * model.dispose();
 * ```
 */
export async function loadModel(
  source: string | URL,
  options: LoadModelOptions = {},
): Promise<Model> {
  const { signal } = options;
  const warn = options.onWarning ?? ((m: string) => console.warn(m));
  const folder = locate(source);
  const aborted = () => {
    if (signal?.aborted) throw new AbortedError(`loading ${show(folder)} was aborted`);
  };
  const sources: TensorSource[] = [];
  const where = new Map<string, [TensorSource, TensorInfo]>();
  let model: Model | null = null;
  try {
    const configFile = show(new URL("config.json", folder));
    const configJson = await readJson(folder, "config.json", signal);
    if (configJson === undefined) {
      throw new CheckpointError(
        `${show(folder)}: no config.json: is this a Hugging Face model folder?`,
      );
    }
    const info = readHfConfig(configJson, {
      source: configFile,
      maxSeqLen: options.maxSeqLen,
      dtype: options.dtype,
      mtp: options.mtp,
    });
    if (options.kvDtype !== undefined) info.config.kvDtype = options.kvDtype;
    if (options.mtpDepth !== undefined) info.config.mtpDepth = options.mtpDepth;
    let input = info.config;
    const base = await openCheckpoint(folder, { signal });
    sources.push(base);
    for (const [n, t] of base.tensors) where.set(n, [base, t]);
    if (options.heads !== undefined) {
      const hf = locate(options.heads);
      const hj = await readJson(hf, "config.json", signal);
      if (hj === undefined) {
        throw new CheckpointError(`${show(hf)}: no config.json in the heads folder`);
      }
      input = { ...input, ...headsConfig(hj, show(new URL("config.json", hf))) };
      const heads = await openHeads(hf, signal);
      sources.push(heads);
      for (const [n, t] of heads.tensors) where.set(headName(n), [heads, t]);
    }
    const c = configOf(input, configFile);
    if (c.headKind === "medusa" && where.has("medusa_head.0.1.weight")) {
      c.headsOwnUnembedding = true;
    }
    if (options.mtp !== false) {
      checkMtpTensors(c, info.mtp, where, { folder: show(folder), configFile });
    }
    const shapes = tensorShapes(c);
    const missing: string[] = [];
    const quantized = new Map<string, TensorInfo>(); // matrix name -> its scales
    let totalBytes = 0;
    for (const [name, shape] of shapes) {
      const found = where.get(name);
      if (!found) {
        missing.push(name);
        continue;
      }
      const t = found[1];
      const scale = where.get(`${name}_scale`)?.[1];
      if (scale && shape.length === 2 && (t.dtype === "I8" || t.dtype === "U8")) {
        // ahead's quantized matrix: I8 [rows, cols] (q8) or U8 [rows, cols / 2] (q4), and scales
        const cols = t.dtype === "I8" ? shape[1] : shape[1] / 2;
        const blocks = [shape[0], shape[1] / 32];
        if (
          t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== cols ||
          scale.dtype !== "F16" || scale.shape.join() !== blocks.join()
        ) {
          throw new CheckpointError(
            `${t.file}: quantized tensor ${name} is ${t.dtype} [${t.shape}] with scales ` +
              `${scale.dtype} [${scale.shape}]; the config needs ${t.dtype} [${
                shape[0]
              }, ${cols}] ` +
              `with F16 [${blocks}]`,
          );
        }
        quantized.set(name, scale);
        totalBytes += t.byteLength + scale.byteLength;
        continue;
      }
      if (!WEIGHT_DTYPES.has(t.dtype)) {
        throw new CheckpointError(
          `${t.file}: tensor ${name} is ${t.dtype}; weights must be F32, F16 or BF16`,
        );
      }
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new CheckpointError(
          `${t.file}: tensor ${name} has shape [${t.shape}], the config needs [${shape}]`,
        );
      }
      totalBytes += t.byteLength;
    }
    if (missing.length > 0) {
      throw new CheckpointError(
        `${show(folder)}: ${missing.length} tensor(s) the config needs are missing: ` +
          `${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`,
      );
    }
    const expected = new Set(shapes.map(([n]) => n));
    const extra = [...where.keys()].filter((n) =>
      !expected.has(n) && !quantized.has(n.replace(/_scale$/, "")) &&
      !(options.mtp === false && isMtpTensor(n, c)) && !isSharedCopy(n, c)
    );
    if (extra.length > 0) {
      warn(
        `${show(folder)}: ${extra.length} tensor(s) in the checkpoint are not used: ` +
          `${extra.slice(0, 8).join(", ")}${extra.length > 8 ? ", ..." : ""}`,
      );
    }
    aborted();
    model = await allocateModel(c, {
      device: options.device,
      maxBindingBytes: options.maxBindingBytes,
    });
    let bytes = 0, count = 0;
    for (const [name] of shapes) {
      aborted();
      const [ckpt, t] = where.get(name)!;
      const data = await ckpt.read(t.name);
      const scale = quantized.get(name);
      if (scale) {
        const scales = await where.get(`${name}_scale`)![0].read(scale.name);
        model.setTensor(name, { dtype: t.dtype === "I8" ? "q8" : "q4", bytes: data, scales });
        bytes += scale.byteLength;
      } else {
        model.setTensor(name, {
          dtype: t.dtype.toLowerCase() as "f32" | "f16" | "bf16",
          bytes: data,
        });
      }
      bytes += t.byteLength;
      options.onProgress?.({
        bytes,
        totalBytes,
        tensors: ++count,
        totalTensors: shapes.length,
        name,
      });
    }
    await model.gpu.device.queue.onSubmittedWorkDone();
    model.gpu.check(`loading ${show(folder)}`);
    aborted();
    const eos = new Set(info.eosIds);
    if (options.tokenizer !== false) {
      const hasTokenizer = await readOptional(folder, "tokenizer.json", signal) !== undefined;
      if (hasTokenizer) {
        model.tokenizer = await loadTokenizer(folder, { signal });
        for (const id of model.tokenizer.eosIds) eos.add(id);
        if (model.tokenizer.vocabSize > c.vocabSize) {
          warn(
            `${
              show(folder)
            }: the tokenizer has ${model.tokenizer.vocabSize} ids but the model only ` +
              `${c.vocabSize}; encoding text that uses the extra ids will fail`,
          );
        }
      }
    }
    const ahead = (configJson as { ahead?: { tokenizer?: unknown } }).ahead;
    if (model.tokenizer === null && options.tokenizer !== false && ahead?.tokenizer === "bytes") {
      model.tokenizer = byteTokenizer();
    }
    model.eosIds = [...eos].filter((id) => id < c.vocabSize);
    return model;
  } catch (e) {
    model?.dispose();
    if (signal?.aborted && !(e instanceof AbortedError)) {
      throw new AbortedError(`loading ${show(folder)} was aborted`, { cause: e });
    }
    throw e;
  } finally {
    for (const s of sources) s.close();
  }
}
