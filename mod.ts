/**
 * ahead: a multi-token-prediction LLM engine on WebGPU. A transformer trunk with `nFuture`
 * output heads predicts several tokens per forward pass; a self-speculative verifier keeps the
 * longest prefix the trunk agrees with, so the output is exactly greedy decoding in fewer passes.
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
export { createGpu, Gpu, type GpuOptions } from "./gpu/device.ts";
export {
  AbortedError,
  ConfigError,
  GpuError,
  InvalidInputError,
  ModelStateError,
  WebGpuUnavailableError,
} from "./gpu/errors.ts";
export {
  countParameters,
  MAX_FUTURE,
  type ModelConfig,
  type ModelConfigInput,
  parseConfig,
} from "./model/config.ts";
export { createModel, type CreateModelOptions, Model } from "./model/model.ts";
export { forward } from "./model/forward.ts";
export {
  type LayerWeights,
  type MedusaWeights,
  type Placement,
  tensorShapes,
  type Weights,
} from "./model/weights.ts";
export type { ForwardContext, KvCache, Scratch } from "./model/trunk.ts";
export type { Dispatch, Matrix } from "./kernels/dispatch.ts";
export {
  complete,
  type Completion,
  generate,
  type GenerateOptions,
  type GenerationStats,
} from "./decode/generate.ts";
export {
  type AttachedDrafts,
  type DraftHost,
  type DraftSource,
  headDraftSource,
  replayDrafts,
} from "./decode/drafts.ts";
