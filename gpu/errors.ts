/**
 * Error classes of the package. Each message says what was wrong and what to do about it.
 * @module
 */

/**
 * WebGPU is missing or no adapter could be found.
 *
 * @example
 * ```ts
 * import { createModel, WebGpuUnavailableError } from "@ahead/mtp";
 * try {
 *   await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 32 });
 * } catch (e) {
 *   if (e instanceof WebGpuUnavailableError) console.error(e.message);
 * }
 * ```
 */
export class WebGpuUnavailableError extends Error {
  /** Always "WebGpuUnavailableError". */
  override name = "WebGpuUnavailableError";
}

/**
 * The GPU rejected work: a validation error, an out-of-memory error or a lost device.
 *
 * @example
 * ```ts
 * import { GpuError } from "@ahead/mtp";
 * const e = new GpuError("validation error in gemv: binding too small");
 * console.log(e.name); // "GpuError"
 * ```
 */
export class GpuError extends Error {
  /** Always "GpuError". */
  override name = "GpuError";
}

/**
 * A model configuration value is out of range.
 *
 * @example
 * ```ts
 * import { ConfigError, parseConfig } from "@ahead/mtp";
 * try {
 *   parseConfig({ vocabSize: 0 });
 * } catch (e) {
 *   if (e instanceof ConfigError) console.error(e.message); // names the field and the allowed range
 * }
 * ```
 */
export class ConfigError extends Error {
  /** Always "ConfigError". */
  override name = "ConfigError";
}

/**
 * An argument to `generate` / `complete` / `forward` is invalid: an empty or too long prompt,
 * token ids outside the vocabulary, `maxTokens` < 1, and the like.
 *
 * @example
 * ```ts
 * import { InvalidInputError } from "@ahead/mtp";
 * const e = new InvalidInputError("maxTokens must be >= 1, got 0");
 * console.log(e instanceof Error); // true
 * ```
 */
export class InvalidInputError extends Error {
  /** Always "InvalidInputError". */
  override name = "InvalidInputError";
}

/**
 * The generation was stopped through its `AbortSignal`.
 *
 * @example
 * ```ts
 * import { AbortedError } from "@ahead/mtp";
 * const e = new AbortedError("generation aborted after 12 tokens");
 * console.log(e.name); // "AbortedError"
 * ```
 */
export class AbortedError extends Error {
  /** Always "AbortedError". */
  override name = "AbortedError";
}

/**
 * The model was used after `dispose()`, or while another generation was running on it.
 *
 * @example
 * ```ts
 * import { ModelStateError } from "@ahead/mtp";
 * const e = new ModelStateError("model was disposed");
 * console.log(e.name); // "ModelStateError"
 * ```
 */
export class ModelStateError extends Error {
  /** Always "ModelStateError". */
  override name = "ModelStateError";
}
