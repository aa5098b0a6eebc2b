// config.json <-> ModelConfig (io/hf_config.ts), without a GPU: configs shaped like the real
// ones of each supported family, the features this engine refuses, and writeHfConfig's round
// trip.
import assert from "node:assert/strict";
import { CheckpointError } from "../gpu/errors.ts";
import { parseConfig } from "../heads/registry.ts";
import { readHfConfig, writeHfConfig } from "../io/hf_config.ts";
import type { ModelConfig, ModelConfigInput } from "../model/config.ts";

const SOURCE = "/models/x/config.json";
type Json = Record<string, unknown>;

const read = (json: unknown, o: { maxSeqLen?: number; dtype?: "f32" | "f16" } = {}) =>
  readHfConfig(json, { source: SOURCE, ...o });

/** Asserts that reading `json` throws a CheckpointError whose message matches each pattern. */
function refuses(json: unknown, patterns: RegExp[], o: { maxSeqLen?: number } = {}): void {
  assert.throws(() => read(json, o), (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected a CheckpointError, got ${e}`);
    assert.ok(e.message.startsWith(`${SOURCE}: `), `the message names the file: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Configs as the Hub holds them (trimmed to what matters, unrelated keys kept where they are
// common, so that they are shown to be ignored).

/** TinyLlama-1.1B (Llama 2 architecture), transformers 4.35. */
const tinyLlama = (): Json => ({
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 5632,
  max_position_embeddings: 2048,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 22,
  num_key_value_heads: 4,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.35.0",
  use_cache: true,
  vocab_size: 32000,
});

const LLAMA3_SCALING = {
  factor: 8.0,
  low_freq_factor: 1.0,
  high_freq_factor: 4.0,
  original_max_position_embeddings: 8192,
  rope_type: "llama3",
};

/** Llama 3.1 8B as transformers 4.x writes it: top-level rope_theta and rope_scaling. */
const llama31v4 = (): Json => ({
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { ...LLAMA3_SCALING },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.43.0.dev0",
  use_cache: true,
  vocab_size: 128256,
});

/** The same model as transformers 5.x writes it: rope_parameters, `dtype`. */
const llama31v5 = (): Json => {
  const j = llama31v4();
  delete j.rope_scaling;
  delete j.rope_theta;
  delete j.torch_dtype;
  return {
    ...j,
    dtype: "bfloat16",
    rope_parameters: { ...LLAMA3_SCALING, rope_theta: 500000.0 },
    transformers_version: "5.0.0",
  };
};

/** SmolLM2-135M: Llama architecture, tied embeddings, 9 heads of 64. */
const smolLm = (): Json => ({
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: "silu",
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  is_llama_config: true,
  max_position_embeddings: 8192,
  model_type: "llama",
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  "transformers.js_config": { kv_cache_dtype: { q4f16: "float16", fp16: "float16" } },
  transformers_version: "4.40.1",
  use_cache: true,
  vocab_size: 49152,
});

/** Mistral-7B-v0.1: a sliding window of 4096 over 32768 positions. */
const mistral = (slidingWindow: number | null): Json => ({
  architectures: ["MistralForCausalLM"],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: "mistral",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: slidingWindow,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.34.0.dev0",
  use_cache: true,
  vocab_size: 32000,
});

/** Qwen2-0.5B: q/k/v biases, a sliding window that is switched off. */
const qwen2 = (): Json => ({
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 131072,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.40.1",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
});

/** Qwen3-0.6B: q/k norms, head_dim 128 with hidden 1024 and 16 heads (not 1024 / 16 = 64). */
const qwen3 = (): Json => ({
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: "qwen3",
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.51.0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
});

/** The attention and head features every config below has unless it says otherwise. */
const plain = {
  qkvBias: false,
  oBias: false,
  qkNorm: false,
  ropeScaling: null,
  dtype: "f16",
  nFuture: 1,
} as const;

// ---------------------------------------------------------------------------------------------
// Reading

Deno.test("readHfConfig() reads a Llama 2 (TinyLlama) config.json", () => {
  const info = read(tinyLlama());
  assert.deepEqual(info.config, {
    ...plain,
    vocabSize: 32000,
    dModel: 2048,
    nLayers: 22,
    nHeads: 32,
    nKvHeads: 4,
    headDim: undefined,
    dFF: 5632,
    maxSeqLen: 2048,
    ropeTheta: 10000,
    normEps: 1e-5,
    tieEmbeddings: false,
  });
  assert.equal(info.modelType, "llama");
  assert.deepEqual(info.eosIds, [2]);
  assert.equal(info.bosId, 1);
  assert.equal(info.maxPositions, 2048);
  // What it reads is a valid configuration: headDim is derived as 2048 / 32.
  const c = parseConfig(info.config);
  assert.equal(c.headDim, 64);
  assert.equal(c.headKind, "transformer");
});

Deno.test("readHfConfig() reads Llama 3.1's llama3 RoPE scaling the transformers 4.x and 5.x ways alike", () => {
  const v4 = read(llama31v4());
  const v5 = read(llama31v5());
  const expected: ModelConfigInput = {
    ...plain,
    vocabSize: 128256,
    dModel: 4096,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 8,
    headDim: undefined,
    dFF: 14336,
    // 131072 positions are allowed; the KV cache is allocated for 4096 unless asked for more.
    maxSeqLen: 4096,
    ropeTheta: 500000,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositions: 8192,
    },
    normEps: 1e-5,
    tieEmbeddings: false,
  };
  assert.deepEqual(v4.config, expected);
  assert.deepEqual(v5.config, expected);
  for (const info of [v4, v5]) {
    assert.deepEqual(info.eosIds, [128001, 128008, 128009]);
    assert.equal(info.bosId, 128000);
    assert.equal(info.maxPositions, 131072);
  }
  assert.equal(read(llama31v5(), { maxSeqLen: 16384 }).config.maxSeqLen, 16384);
  assert.equal(read(llama31v5(), { dtype: "f32" }).config.dtype, "f32");
});

Deno.test("readHfConfig() reads a SmolLM config.json with tied embeddings", () => {
  const info = read(smolLm());
  assert.equal(info.config.tieEmbeddings, true);
  assert.equal(info.config.dModel, 576);
  assert.equal(info.config.nHeads, 9);
  assert.equal(info.config.nKvHeads, 3);
  assert.equal(info.config.ropeTheta, 100000);
  assert.equal(info.config.maxSeqLen, 4096);
  assert.equal(info.maxPositions, 8192);
  assert.deepEqual(info.eosIds, [0]);
  assert.equal(info.bosId, 0);
  assert.equal(parseConfig(info.config).headDim, 64);
});

Deno.test("readHfConfig() reads Mistral: no sliding window, or one that covers maxSeqLen", () => {
  const none = read(mistral(null));
  assert.equal(none.config.maxSeqLen, 4096);
  assert.equal(none.modelType, "mistral");
  assert.equal(none.config.nKvHeads, 8);
  // Without a window any maxSeqLen is fine.
  assert.equal(read(mistral(null), { maxSeqLen: 8192 }).config.maxSeqLen, 8192);
  // A window of 4096 is full attention while at most 4096 positions are kept.
  assert.equal(read(mistral(4096)).config.maxSeqLen, 4096);
  assert.equal(read(mistral(4096), { maxSeqLen: 4096 }).config.maxSeqLen, 4096);
  assert.equal(read(mistral(4096), { maxSeqLen: 100 }).config.maxSeqLen, 100);
});

Deno.test("readHfConfig() refuses Mistral's sliding window of 4096 with maxSeqLen 8192, naming both", () => {
  refuses(mistral(4096), [/sliding_window = 4096/, /maxSeqLen = 8192/, /maxSeqLen <= 4096/], {
    maxSeqLen: 8192,
  });
});

Deno.test("readHfConfig() reads Qwen2: q/k/v biases without an o bias; a switched-off window is ignored", () => {
  const info = read(qwen2());
  assert.deepEqual(info.config, {
    ...plain,
    qkvBias: true,
    vocabSize: 151936,
    dModel: 896,
    nLayers: 24,
    nHeads: 14,
    nKvHeads: 2,
    headDim: undefined,
    dFF: 4864,
    maxSeqLen: 4096,
    ropeTheta: 1000000,
    normEps: 1e-6,
    tieEmbeddings: true,
  });
  assert.equal(parseConfig(info.config).headDim, 64);
  // use_sliding_window false: the window of 32768 does not matter, even for 65536 positions.
  assert.equal(read(qwen2(), { maxSeqLen: 65536 }).config.maxSeqLen, 65536);
  // Switched on, it does.
  refuses({ ...qwen2(), use_sliding_window: true }, [/sliding_window = 32768/], {
    maxSeqLen: 65536,
  });
  assert.equal(read({ ...qwen2(), use_sliding_window: true }).config.maxSeqLen, 4096);
});

Deno.test("readHfConfig() reads Qwen3: q/k norms and an explicit head_dim of 128", () => {
  const info = read(qwen3());
  assert.deepEqual(info.config, {
    ...plain,
    qkNorm: true,
    vocabSize: 151936,
    dModel: 1024,
    nLayers: 28,
    nHeads: 16,
    nKvHeads: 8,
    headDim: 128,
    dFF: 3072,
    maxSeqLen: 4096,
    ropeTheta: 1000000,
    normEps: 1e-6,
    tieEmbeddings: true,
  });
  assert.deepEqual(info.eosIds, [151645]);
  const c = parseConfig(info.config);
  assert.equal(c.headDim, 128);
  assert.equal(c.nHeads * c.headDim, 2048);
});

Deno.test("readHfConfig() reads Llama's attention_bias as q/k/v and o biases", () => {
  const info = read({ ...tinyLlama(), attention_bias: true });
  assert.equal(info.config.qkvBias, true);
  assert.equal(info.config.oBias, true);
});

Deno.test("readHfConfig() reads linear RoPE scaling written either way", () => {
  // transformers 4.x, older spelling ("type").
  const v4 = read({ ...tinyLlama(), rope_scaling: { type: "linear", factor: 4.0 } });
  assert.deepEqual(v4.config.ropeScaling, { type: "linear", factor: 4 });
  assert.equal(v4.config.ropeTheta, 10000);
  // transformers 5.x.
  const j = tinyLlama();
  delete j.rope_scaling;
  delete j.rope_theta;
  const v5 = read({ ...j, rope_parameters: { rope_type: "linear", factor: 2, rope_theta: 20000 } });
  assert.deepEqual(v5.config.ropeScaling, { type: "linear", factor: 2 });
  assert.equal(v5.config.ropeTheta, 20000);
  // "default" is no scaling at all.
  const d = read({ ...j, rope_parameters: { rope_type: "default", rope_theta: 1e6 } });
  assert.equal(d.config.ropeScaling, null);
  assert.equal(d.config.ropeTheta, 1e6);
});

Deno.test("readHfConfig() takes the weight type from torch_dtype or dtype, and the options", () => {
  assert.equal(read({ ...tinyLlama(), torch_dtype: "float32" }).config.dtype, "f32");
  assert.equal(read({ ...tinyLlama(), torch_dtype: "float16" }).config.dtype, "f16");
  const j = tinyLlama();
  delete j.torch_dtype;
  assert.equal(read({ ...j, dtype: "float32" }).config.dtype, "f32");
  assert.equal(read({ ...j, dtype: "bfloat16" }).config.dtype, "f16");
  assert.equal(read({ ...j, dtype: "bfloat16" }, { dtype: "f32" }).config.dtype, "f32");
  refuses({ ...tinyLlama(), torch_dtype: "int8" }, [/torch_dtype "int8"/]);
});

// ---------------------------------------------------------------------------------------------
// Refusals: each names the file, the field and the value.

const refusals: [string, () => unknown, RegExp[]][] = [
  [
    'an unknown model_type ("gemma2")',
    () => ({ ...tinyLlama(), model_type: "gemma2", hidden_act: undefined }),
    [/model_type "gemma2" is not supported/, /llama, mistral, qwen2, qwen3/],
  ],
  ["a missing model_type", () => ({ ...tinyLlama(), model_type: undefined }), [/model_type/]],
  [
    "a mixture of experts (num_local_experts 8)",
    () => ({ ...mistral(null), num_local_experts: 8, num_experts_per_tok: 2 }),
    [/num_local_experts = 8/, /mixture-of-experts/],
  ],
  [
    "a quantized checkpoint (quantization_config)",
    () => ({ ...tinyLlama(), quantization_config: { quant_method: "gptq", bits: 4 } }),
    [/quantization_config/],
  ],
  [
    'another activation (hidden_act "gelu")',
    () => ({ ...tinyLlama(), hidden_act: "gelu" }),
    [/hidden_act "gelu"/],
  ],
  [
    'a rope_scaling type of "yarn" (4.x)',
    () => ({
      ...qwen2(),
      rope_scaling: { rope_type: "yarn", factor: 4.0, original_max_position_embeddings: 32768 },
    }),
    [/rope_scaling\.rope_type "yarn" is not supported/],
  ],
  [
    'a rope_parameters type of "yarn" (5.x)',
    () => ({
      ...llama31v5(),
      rope_parameters: { rope_type: "yarn", rope_theta: 1e6, factor: 4 },
    }),
    [/rope_parameters\.rope_type "yarn" is not supported/],
  ],
  [
    'a rope_scaling type of "dynamic"',
    () => ({ ...tinyLlama(), rope_scaling: { type: "dynamic", factor: 2 } }),
    [/rope_type "dynamic"/],
  ],
  [
    "llama3 scaling without its factors",
    () => ({ ...llama31v4(), rope_scaling: { rope_type: "llama3", factor: 8 } }),
    [/rope_scaling\.low_freq_factor must be a number > 0, got undefined/],
  ],
  ["mlp_bias true", () => ({ ...llama31v4(), mlp_bias: true }), [/mlp_bias = true/]],
  [
    "a missing vocab_size",
    () => ({ ...tinyLlama(), vocab_size: undefined }),
    [/vocab_size is missing/],
  ],
  [
    "a string hidden_size",
    () => ({ ...tinyLlama(), hidden_size: "2048" }),
    [/hidden_size must be a number, got the string "2048"/],
  ],
  [
    "a negative rope_theta",
    () => ({ ...tinyLlama(), rope_theta: -1 }),
    [/rope_theta must be > 0, got -1/],
  ],
  ["a config that is null", () => null, [/must hold a JSON object, got null/]],
  ["a config that is an array", () => [tinyLlama()], [/must hold a JSON object, got an array/]],
  [
    "a config that is a string",
    () => "llama",
    [/must hold a JSON object, got the string "llama"/],
  ],
];

for (const [what, json, patterns] of refusals) {
  Deno.test(`readHfConfig() refuses ${what} with a CheckpointError naming the field and value`, () => {
    // JSON round trip: drops the undefined fields the cases use to delete a key.
    const value = json();
    refuses(value === undefined ? value : JSON.parse(JSON.stringify(value)), patterns);
  });
}

// ---------------------------------------------------------------------------------------------
// Writing

const roundTrips: [string, ModelConfigInput][] = [
  ["a small Llama", {
    vocabSize: 67,
    dModel: 24,
    nLayers: 2,
    nHeads: 3,
    nKvHeads: 1,
    headDim: 8,
    dFF: 40,
    maxSeqLen: 96,
    nFuture: 3,
  }],
  ["Llama 3.1 with llama3 scaling, f16, medusa heads with their own unembedding", {
    vocabSize: 128256,
    dModel: 4096,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 8,
    dFF: 14336,
    maxSeqLen: 4096,
    ropeTheta: 500000,
    normEps: 1e-5,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositions: 8192,
    },
    dtype: "f16",
    nFuture: 5,
    headKind: "medusa",
    headsOwnUnembedding: true,
  }],
  ["Qwen2-shaped (q/k/v biases, tied)", {
    vocabSize: 151936,
    dModel: 896,
    nLayers: 24,
    nHeads: 14,
    nKvHeads: 2,
    dFF: 4864,
    maxSeqLen: 2048,
    ropeTheta: 1e6,
    normEps: 1e-6,
    tieEmbeddings: true,
    qkvBias: true,
    nFuture: 4,
  }],
  ["Qwen3-shaped (q/k norms, head_dim 128 over hidden 1024)", {
    vocabSize: 151936,
    dModel: 1024,
    nLayers: 28,
    nHeads: 16,
    nKvHeads: 8,
    headDim: 128,
    dFF: 3072,
    maxSeqLen: 4096,
    ropeTheta: 1e6,
    normEps: 1e-6,
    tieEmbeddings: true,
    qkNorm: true,
    nFuture: 2,
    headKind: "medusa",
  }],
  ["an o bias without q/k/v biases, linear scaling", {
    vocabSize: 1000,
    dModel: 64,
    nLayers: 1,
    nHeads: 4,
    dFF: 128,
    maxSeqLen: 512,
    oBias: true,
    ropeScaling: { type: "linear", factor: 2.5 },
    normEps: 0.25,
    nFuture: 8,
  }],
  ["q/k/v and o biases with q/k norms", {
    vocabSize: 300,
    dModel: 32,
    nLayers: 3,
    nHeads: 2,
    dFF: 64,
    maxSeqLen: 64,
    qkvBias: true,
    oBias: true,
    qkNorm: true,
    nFuture: 1,
    dtype: "f16",
  }],
];

for (const [what, input] of roundTrips) {
  Deno.test(`writeHfConfig() then readHfConfig() gives back every field: ${what}`, () => {
    const c: ModelConfig = parseConfig(input);
    // Through JSON text, as saveModel writes it.
    const json = JSON.parse(JSON.stringify(writeHfConfig(c, { eosIds: [2, 7], bosId: 1 })));
    const info = read(json);
    assert.deepEqual(parseConfig(info.config), c);
    assert.deepEqual(info.eosIds, [2, 7]);
    assert.equal(info.bosId, 1);
    assert.equal(info.maxPositions, c.maxSeqLen);
    // The ahead section holds the heads and the attention features.
    assert.deepEqual(json.ahead, {
      nFuture: c.nFuture,
      headKind: c.headKind,
      headsOwnUnembedding: c.headsOwnUnembedding,
      qkvBias: c.qkvBias,
      oBias: c.oBias,
      qkNorm: c.qkNorm,
    });
    // The family that the features imply is one the reader accepts.
    assert.equal(json.model_type, c.qkNorm ? "qwen3" : c.qkvBias && !c.oBias ? "qwen2" : "llama");
  });
}

Deno.test("writeHfConfig() without an ahead section still reads back the same trunk from the family's fields", () => {
  for (const [, input] of roundTrips) {
    const c = parseConfig(input);
    // No family has an o bias without q/k/v biases: that one needs the ahead section.
    if (c.oBias && !c.qkvBias) continue;
    const json = writeHfConfig(c);
    delete json.ahead;
    const back = parseConfig(read(json).config);
    // Everything but the heads comes from the standard fields.
    assert.deepEqual(
      {
        ...back,
        nFuture: c.nFuture,
        headKind: c.headKind,
        mtpDepth: c.mtpDepth,
        headsOwnUnembedding: false,
      },
      { ...c, headsOwnUnembedding: false },
    );
    assert.equal(back.nFuture, 1);
  }
});

Deno.test("writeHfConfig() with another model_type names its architecture; one eos id is a number", () => {
  const c = parseConfig(roundTrips[0][1]);
  const json = writeHfConfig(c, { modelType: "mistral", eosIds: [5] });
  assert.equal(json.model_type, "mistral");
  assert.deepEqual(json.architectures, ["MistralForCausalLM"]);
  assert.equal(json.eos_token_id, 5);
  assert.equal("bos_token_id" in json, false);
  assert.deepEqual(parseConfig(read(json).config), c);
  assert.equal("eos_token_id" in writeHfConfig(c), false);
});

Deno.test("readHfConfig() caps a saved maxSeqLen above 4096 at 4096 unless maxSeqLen is given", () => {
  const c = parseConfig({ ...roundTrips[0][1], maxSeqLen: 8192 });
  const json = writeHfConfig(c);
  const info = read(json);
  assert.equal(info.maxPositions, 8192);
  assert.equal(info.config.maxSeqLen, 4096);
  assert.deepEqual(parseConfig(read(json, { maxSeqLen: 8192 }).config), c);
});
