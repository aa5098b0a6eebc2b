/**
 * ahead: a multi-token-prediction LLM engine on WebGPU. A transformer trunk with `nFuture`
 * output heads predicts several tokens per forward pass; a self-speculative verifier keeps the
 * longest prefix the trunk agrees with, so the output is exactly greedy decoding in fewer passes.
 *
 * This is the stable surface. Building blocks for advanced use (devices, arenas, kernel
 * launches, head kinds, the decode session) are in `@ahead/mtp/internals`.
 *
 * @example
 * ```ts
 * import { complete, createModel } from "@ahead/mtp";
 * const model = await createModel({
 *   vocabSize: 256, dModel: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, dFF: 128,
 *   maxSeqLen: 256, nFuture: 4, headKind: "transformer",
 * }, { seed: 1 });
 * const greedy = await complete(model, [1, 2, 3], { maxTokens: 32 });
 * const fast = await complete(model, [1, 2, 3], { maxTokens: 32, mode: "speculative" });
 * console.log(fast.tokens.join() === greedy.tokens.join(), fast.stats.tokensPerStep);
 * model.dispose();
 * ```
 * @module
 */
export {
  AbortedError,
  CheckpointError,
  ConfigError,
  GpuError,
  InvalidInputError,
  ModelStateError,
  ShapeError,
  TokenizerError,
  WebGpuUnavailableError,
} from "./gpu/errors.ts";
export { MAX_FUTURE } from "./kernels/state.ts";
export {
  type DefaultedField,
  HF_CONFIG_KEYS,
  type ModelConfig,
  type ModelConfigInput,
  type RopeScaling,
} from "./model/config.ts";
export { preset, type PresetName, PRESETS } from "./model/presets.ts";
export type { TensorBytes, TensorData } from "./model/weights.ts";
export { countParameters, parseConfig, tensorShapes } from "./heads/registry.ts";
export {
  allocateModel,
  createModel,
  type CreateModelOptions,
  Model,
  type ModelOptions,
} from "./heads/model.ts";
export { forward } from "./heads/forward.ts";
export { loadModel, type LoadModelOptions, type LoadProgress } from "./io/load.ts";
export { saveModel, type SaveModelOptions } from "./io/save.ts";
export {
  type Chunk,
  complete,
  type Completion,
  generate,
  type GenerateOptions,
  type Prompt,
} from "./decode/generate.ts";
export type { GenerationStats } from "./decode/stats.ts";
export {
  type DraftSource,
  headDraftSource,
  headsAndLookup,
  lookupDrafts,
  type LookupOptions,
  replayDrafts,
} from "./decode/drafts.ts";
export {
  byteTokenizer,
  type ByteTokenizerOptions,
  createTextStream,
  type DecodeOptions,
  type EncodeOptions,
  loadTokenizer,
  type LoadTokenizerOptions,
  type TextStream,
  type TextStreamOptions,
  type Tokenizer,
} from "./io/tokenizer.ts";
export {
  applyChatTemplate,
  type ChatMessage,
  chatTemplateOf,
  type ChatTemplateOptions,
} from "./io/chat.ts";
