/**
 * Saving a model as a Hugging Face folder: config.json (with ahead's heads in its `ahead`
 * section) and model.safetensors in HF naming, each written to a temporary file and renamed, so
 * a crash never leaves a half-written checkpoint. Loading what was saved gives the same bits.
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Model } from "../heads/model.ts";
import { writeHfConfig } from "./hf_config.ts";
import { type TensorToWrite, writeSafetensors } from "./safetensors.ts";

/** Options of {@link saveModel}. */
export interface SaveModelOptions {
  /** config.json's `model_type` (default: the family the config's features imply). */
  modelType?: string;
  /** Metadata strings for the safetensors header. */
  metadata?: Record<string, string>;
}

/** Tokenizer files copied along when the model's tokenizer came from a local folder. */
const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "generation_config.json",
  "chat_template.jinja",
  "special_tokens_map.json",
];

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Writes `model` to the folder `dir` (created if missing): model.safetensors with every tensor
 * in its storage type (f16 matrices of an f16 model; a q8 or q4 model's matrices as I8 or U8
 * values with an F16 `{name}_scale` tensor; f32 otherwise), config.json, and the
 * tokenizer's files when the model's tokenizer was loaded from a local folder.
 *
 * @example
 * ```ts
 * import { createModel, loadModel, saveModel } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 64 });
 * await saveModel(model, "./my-model");
 * const again = await loadModel("./my-model");
 * ```
 */
export async function saveModel(
  model: Model,
  dir: string | URL,
  options: SaveModelOptions = {},
): Promise<void> {
  model.assertUsable();
  const folder = dir instanceof URL ? fileURLToPath(dir) : dir;
  await Deno.mkdir(folder, { recursive: true });
  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of model.tensorShapes()) {
    const t = await model.getTensor(name);
    if (t.dtype === "q8" || t.dtype === "q4") {
      const q4 = t.dtype === "q4";
      tensors.push(
        {
          name,
          dtype: q4 ? "U8" : "I8",
          shape: [shape[0], q4 ? shape[1] / 2 : shape[1]],
          data: t.bytes,
        },
        { name: `${name}_scale`, dtype: "F16", shape: [shape[0], shape[1] / 32], data: t.scales! },
      );
    } else {
      tensors.push({ name, dtype: t.dtype === "f16" ? "F16" : "F32", shape, data: t.bytes });
    }
  }
  await writeSafetensors(join(folder, "model.safetensors"), tensors, {
    format: "pt",
    ...options.metadata,
  });
  const config = writeHfConfig(model.config, {
    modelType: options.modelType,
    eosIds: model.eosIds,
    bosId: model.tokenizer?.bosId,
    tokenizer: model.tokenizer?.source === "byteTokenizer()" ? "bytes" : undefined,
  });
  await writeAtomic(join(folder, "config.json"), JSON.stringify(config, null, 2) + "\n");
  const source = model.tokenizer?.source;
  const from = source?.startsWith("file:") ? fileURLToPath(source) : source;
  if (from && !from.includes("://") && (await Deno.stat(from).catch(() => null))?.isDirectory) {
    for (const f of TOKENIZER_FILES) {
      const text = await Deno.readTextFile(join(from, f)).catch(() => null);
      if (text !== null) await writeAtomic(join(folder, f), text);
    }
  }
}
