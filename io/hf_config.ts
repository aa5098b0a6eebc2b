/**
 * Hugging Face config.json <-> ModelConfig, for the families people run on one GPU: llama
 * (Llama 2/3, SmolLM, TinyLlama), mistral, qwen2, qwen3, and Xiaomi's mimo (a Qwen2 trunk with
 * sequential MTP modules). `num_nextn_predict_layers` on a supported trunk means MTP modules in
 * the DeepSeek-V3 layout; checkpoints whose MTP modules ahead knows but whose trunk it does not
 * run (DeepSeek-V3, GLM-4.5, Qwen3-Next) get an error that says so. Both ways transformers writes the
 * RoPE fields are read: 4.x (top-level `rope_theta`, `rope_scaling`) and 5.x (`rope_parameters`).
 * Anything this engine does not implement is a CheckpointError naming the field and the value,
 * never silently wrong output. ahead's own fields (heads) live in an `ahead` section.
 * @module
 */
import { CheckpointError, describeValue } from "../gpu/errors.ts";
import type { ModelConfig, ModelConfigInput, RopeScaling } from "../model/config.ts";

/** The model types (config.json `model_type`) this engine runs. */
export const SUPPORTED_MODEL_TYPES = ["llama", "mistral", "qwen2", "qwen3", "mimo"] as const;

/** Families with MTP modules whose trunk ahead does not run, and why. */
const MTP_TRUNKS_NOT_RUN: Record<string, string> = {
  deepseek_v3: "DeepSeek-V3's trunk uses multi-head latent attention (MLA) and mixture-of-experts",
  deepseek_v32: "DeepSeek-V3.2's trunk uses MLA, sparse attention and mixture-of-experts",
  glm4_moe: "GLM-4.5's trunk is a mixture-of-experts",
  qwen3_next: "Qwen3-Next's trunk uses Gated DeltaNet linear attention and mixture-of-experts",
  qwen3_5: "Qwen3.5's trunk uses Gated DeltaNet linear attention",
  qwen3_5_moe: "Qwen3.5's trunk uses Gated DeltaNet linear attention and mixture-of-experts",
};

const ARCHITECTURES: Record<string, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
  mimo: "MiMoForCausalLM",
};

/** What `readHfConfig` found besides the model configuration. */
export interface HfConfigInfo {
  /** The configuration (maxSeqLen from the options or the checkpoint). */
  config: ModelConfigInput;
  /** `model_type`. */
  modelType: string;
  /** `eos_token_id` (one or several). */
  eosIds: number[];
  /** `bos_token_id`, where given. */
  bosId: number | undefined;
  /** `max_position_embeddings`: the longest context the checkpoint was made for. */
  maxPositions: number;
  /**
   * MTP modules config.json declares (`num_nextn_predict_layers`), with the config key and the
   * layout their tensors should have; null for none.
   */
  mtp: { layers: number; key: string; layout: "mimo" | "deepseek" } | null;
}

/** Choices a loader makes that config.json does not settle. */
export interface HfConfigOptions {
  /** Name of the file in messages (a path or URL). */
  source: string;
  /** Longest sequence to allocate for. Default min(max_position_embeddings, 4096). */
  maxSeqLen?: number;
  /**
   * Weight storage. Default: what ahead saved ("q8", "q4"), else "f16" for f16/bf16
   * checkpoints and "f32" for f32 ones.
   */
  dtype?: "f32" | "f16" | "q8" | "q4";
  /** Use the MTP modules config.json declares. Default true; false loads the trunk alone. */
  mtp?: boolean;
}

type Json = Record<string, unknown>;

/**
 * Reads a parsed config.json into a model configuration (heads from its `ahead` section, if
 * any; none otherwise).
 *
 * @throws {CheckpointError} naming the file, the field and the value, for a missing field, an
 * architecture or feature this engine does not run (another model_type, MoE, quantization,
 * another activation, a rope_scaling type other than llama3 and linear, mlp_bias, a sliding
 * window shorter than maxSeqLen).
 */
export function readHfConfig(json: unknown, o: HfConfigOptions): HfConfigInfo {
  const src = o.source;
  const fail = (msg: string): never => {
    throw new CheckpointError(`${src}: ${msg}`);
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail(`config.json must hold a JSON object, got ${describeValue(json)}`);
  }
  const j = json as Json;
  const modelType = j.model_type;
  if (typeof modelType !== "string") {
    fail(
      `model_type is ${describeValue(modelType)}; expected one of ${
        SUPPORTED_MODEL_TYPES.join(", ")
      }`,
    );
  }
  if (MTP_TRUNKS_NOT_RUN[modelType as string]) {
    fail(
      `model_type "${modelType}": ahead reads its MTP modules, but ${
        MTP_TRUNKS_NOT_RUN[modelType as string]
      }, which ahead does not run; it runs ${SUPPORTED_MODEL_TYPES.join(", ")} trunks`,
    );
  }
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType as string)) {
    fail(
      `model_type "${modelType}" is not supported: ahead runs ${
        SUPPORTED_MODEL_TYPES.join(", ")
      } ` +
        `checkpoints`,
    );
  }
  const num = (key: string, dflt?: number): number => {
    const v = j[key] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      fail(
        v === undefined ? `${key} is missing` : `${key} must be a number, got ${describeValue(v)}`,
      );
    }
    return v as number;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    const v = j[key] ?? dflt;
    if (typeof v !== "boolean") fail(`${key} must be true or false, got ${describeValue(v)}`);
    return v as boolean;
  };
  for (
    const key of ["num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size"]
  ) {
    if (j[key] !== undefined && j[key] !== null && j[key] !== 0) {
      fail(`${key} = ${describeValue(j[key])}: mixture-of-experts models are not supported`);
    }
  }
  if (j.quantization_config !== undefined && j.quantization_config !== null) {
    fail(
      `quantization_config is set: quantized checkpoints (GPTQ, AWQ, bitsandbytes...) are not ` +
        `supported; load the f16, bf16 or f32 checkpoint`,
    );
  }
  const act = j.hidden_act ?? j.hidden_activation ?? "silu";
  if (act !== "silu") {
    fail(`hidden_act "${act}" is not supported: ahead's feed-forward is SwiGLU (silu)`);
  }
  if (modelType === "llama" && bool("mlp_bias", false)) {
    fail("mlp_bias = true is not supported (biases in the feed-forward block)");
  }

  const maxPositions = num("max_position_embeddings", 2048);
  const maxSeqLen = o.maxSeqLen ?? Math.min(maxPositions, 4096);
  // Sliding-window attention equals full attention while the window covers every position.
  const windowed = modelType === "mistral" || j.use_sliding_window === true;
  if (windowed && j.sliding_window !== null && j.sliding_window !== undefined) {
    const w = num("sliding_window");
    if (w < maxSeqLen) {
      fail(
        `sliding_window = ${w} is shorter than maxSeqLen = ${maxSeqLen}: sliding-window attention ` +
          `is not implemented; load with maxSeqLen <= ${w}`,
      );
    }
  }

  const { theta, scaling } = readRope(j, fail);
  const attentionBias = bool("attention_bias", false);
  const nHeads = num("num_attention_heads");
  const headDim = j.head_dim === null || j.head_dim === undefined ? undefined : num("head_dim");
  const dtypeName = (j.torch_dtype ?? j.dtype ?? "float32") as string;
  if (!["float32", "float16", "bfloat16"].includes(dtypeName)) {
    fail(`torch_dtype "${dtypeName}" is not supported: ahead loads float32, float16 and bfloat16`);
  }
  const ahead = (j.ahead ?? {}) as Json;
  const mtp = readMtp(j, modelType as string, fail);
  const useMtp = mtp !== null && o.mtp !== false && typeof ahead.headKind !== "string";
  const config: ModelConfigInput = {
    vocabSize: num("vocab_size"),
    dModel: num("hidden_size"),
    nLayers: num("num_hidden_layers"),
    nHeads,
    nKvHeads: num("num_key_value_heads", nHeads),
    headDim,
    dFF: num("intermediate_size"),
    maxSeqLen,
    ropeTheta: theta,
    ropeScaling: scaling,
    normEps: num("rms_norm_eps", 1e-6),
    tieEmbeddings: bool("tie_word_embeddings", false),
    qkvBias: modelType === "qwen2" || modelType === "mimo" || attentionBias,
    oBias: modelType !== "qwen2" && modelType !== "mimo" && attentionBias,
    qkNorm: modelType === "qwen3",
    dtype: o.dtype ??
      (ahead.dtype === "q8" || ahead.dtype === "q4"
        ? ahead.dtype
        : dtypeName === "float32"
        ? "f32"
        : "f16"),
    nFuture: typeof ahead.nFuture === "number" ? ahead.nFuture : useMtp ? 1 + mtp!.layers : 1,
    ...(typeof ahead.headKind === "string" ? { headKind: ahead.headKind } : {}),
    ...(useMtp ? { headKind: "sequential", mtpLayout: mtp!.layout } : {}),
    ...(ahead.mtpLayout === "mimo" || ahead.mtpLayout === "deepseek"
      ? { mtpLayout: ahead.mtpLayout }
      : {}),
    ...(typeof ahead.mtpDepth === "number" ? { mtpDepth: ahead.mtpDepth } : {}),
    // ahead's own section, where saveModel wrote one, settles what the family cannot express.
    ...Object.fromEntries(
      ["headsOwnUnembedding", "qkvBias", "oBias", "qkNorm"]
        .filter((k) => typeof ahead[k] === "boolean").map((k) => [k, ahead[k]]),
    ),
  };
  const ids = (v: unknown): number[] =>
    v === undefined || v === null
      ? []
      : (Array.isArray(v) ? v : [v]).filter((x) => Number.isInteger(x));
  return {
    config,
    modelType: modelType as string,
    eosIds: ids(j.eos_token_id),
    bosId: ids(j.bos_token_id)[0],
    maxPositions,
    mtp: useMtp ? mtp : null,
  };
}

/** The MTP modules config.json declares: MiMo's layout for mimo, else DeepSeek-V3's. */
function readMtp(
  j: Json,
  modelType: string,
  fail: (m: string) => never,
): HfConfigInfo["mtp"] {
  const key = ["num_nextn_predict_layers", "mtp_num_hidden_layers"].find((k) =>
    j[k] !== undefined && j[k] !== null
  );
  if (!key) return null;
  const n = j[key];
  if (!Number.isInteger(n) || (n as number) < 0) {
    fail(`${key} must be an integer >= 0, got ${describeValue(n)}`);
  }
  if (n === 0) return null;
  if ((n as number) > 7) {
    fail(`${key} = ${n}: ahead runs at most 7 MTP modules (8 heads in all)`);
  }
  return { layers: n as number, key, layout: modelType === "mimo" ? "mimo" : "deepseek" };
}

function readRope(
  j: Json,
  fail: (m: string) => never,
): { theta: number; scaling: RopeScaling | null } {
  // transformers 5.x: rope_parameters { rope_type, rope_theta, factor, ... }; 4.x: top level.
  const p = (j.rope_parameters ?? j.rope_scaling ?? null) as Json | null;
  const thetaRaw = (j.rope_parameters as Json | undefined)?.rope_theta ?? j.rope_theta ?? 10000;
  if (typeof thetaRaw !== "number" || !(thetaRaw > 0)) {
    fail(`rope_theta must be > 0, got ${describeValue(thetaRaw)}`);
  }
  const theta = thetaRaw as number;
  if (p === null) return { theta, scaling: null };
  if (typeof p !== "object" || Array.isArray(p)) {
    fail(`rope_parameters/rope_scaling must be an object, got ${describeValue(p)}`);
  }
  const field = j.rope_parameters ? "rope_parameters" : "rope_scaling";
  const type = p.rope_type ?? p.type ?? "default";
  const n = (key: string): number => {
    const v = p[key];
    if (typeof v !== "number" || !(v > 0)) {
      fail(`${field}.${key} must be a number > 0, got ${describeValue(v)}`);
    }
    return v as number;
  };
  if (type === "default") return { theta, scaling: null };
  if (type === "linear") return { theta, scaling: { type: "linear", factor: n("factor") } };
  if (type === "llama3") {
    return {
      theta,
      scaling: {
        type: "llama3",
        factor: n("factor"),
        lowFreqFactor: n("low_freq_factor"),
        highFreqFactor: n("high_freq_factor"),
        originalMaxPositions: n("original_max_position_embeddings"),
      },
    };
  }
  return fail(
    `${field}.rope_type "${String(type)}" is not supported: ahead computes "default", "linear" ` +
      `and "llama3" RoPE`,
  );
}

/**
 * The config.json of a model, as transformers 5.x writes it (`rope_parameters`, `dtype`) and with
 * the 4.x spellings beside them (`rope_theta`, `rope_scaling`, `torch_dtype`), plus an
 * `ahead` section holding the heads (nFuture, headKind, headsOwnUnembedding) and the attention
 * features (qkvBias, oBias, qkNorm), so that a saved model loads back exactly. `modelType`
 * defaults to the family the config's features imply.
 */
export function writeHfConfig(
  c: ModelConfig,
  o: { modelType?: string; eosIds?: readonly number[]; bosId?: number; tokenizer?: "bytes" } = {},
): Record<string, unknown> {
  const modelType = o.modelType ?? (c.qkNorm ? "qwen3" : c.qkvBias && !c.oBias ? "qwen2" : "llama");
  const rope: Json = { rope_type: c.ropeScaling?.type ?? "default", rope_theta: c.ropeTheta };
  if (c.ropeScaling?.type === "linear") rope.factor = c.ropeScaling.factor;
  if (c.ropeScaling?.type === "llama3") {
    rope.factor = c.ropeScaling.factor;
    rope.low_freq_factor = c.ropeScaling.lowFreqFactor;
    rope.high_freq_factor = c.ropeScaling.highFreqFactor;
    rope.original_max_position_embeddings = c.ropeScaling.originalMaxPositions;
  }
  return {
    architectures: [ARCHITECTURES[modelType] ?? "LlamaForCausalLM"],
    model_type: modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.dModel,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    intermediate_size: c.dFF,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_parameters: rope,
    // The transformers 4.x spelling too, so older readers do not fall back to theta 10000.
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling ? { ...rope, type: rope.rope_type } : null,
    tie_word_embeddings: c.tieEmbeddings,
    hidden_act: "silu",
    ...(modelType === "llama" ? { attention_bias: c.qkvBias, mlp_bias: false } : {}),
    ...(modelType === "qwen3" ? { attention_bias: c.qkvBias } : {}),
    // A quantized model's other tensors (the embedding) are f16.
    dtype: c.dtype === "f32" ? "float32" : "float16",
    torch_dtype: c.dtype === "f32" ? "float32" : "float16",
    ...(o.eosIds?.length
      ? { eos_token_id: o.eosIds.length === 1 ? o.eosIds[0] : [...o.eosIds] }
      : {}),
    ...(o.bosId !== undefined ? { bos_token_id: o.bosId } : {}),
    // What other engines read for MTP modules (vLLM, SGLang, llama.cpp).
    ...(c.headKind === "sequential" ? { num_nextn_predict_layers: c.nFuture - 1 } : {}),
    ahead: {
      nFuture: c.nFuture,
      headKind: c.headKind,
      ...(c.headKind === "sequential" ? { mtpLayout: c.mtpLayout, mtpDepth: c.mtpDepth } : {}),
      headsOwnUnembedding: c.headsOwnUnembedding,
      qkvBias: c.qkvBias,
      oBias: c.oBias,
      qkNorm: c.qkNorm,
      // q8 / q4: matrices are stored quantized, `{name}` (I8, or U8 for two 4-bit weights a
      // byte) with `{name}_scale` (F16, one per block of 32 weights along a row).
      ...(c.dtype === "q8" || c.dtype === "q4" ? { dtype: c.dtype } : {}),
      // A byte-level model has no tokenizer.json: the loader makes its byte tokenizer.
      ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
    },
  };
}
