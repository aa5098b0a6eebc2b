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
 */
export class GpuError extends Error {
  /** Always "GpuError". */
  override name = "GpuError";
}

/**
 * A model configuration value is out of range.
 */
export class ConfigError extends Error {
  /** Always "ConfigError". */
  override name = "ConfigError";
}

/**
 * An argument to `generate` / `complete` / `forward` is invalid: an empty or too long prompt,
 * token ids outside the vocabulary, `maxTokens` < 1, and the like.
 */
export class InvalidInputError extends Error {
  /** Always "InvalidInputError". */
  override name = "InvalidInputError";
}

/**
 * The generation was stopped through its `AbortSignal`.
 */
export class AbortedError extends Error {
  /** Always "AbortedError". */
  override name = "AbortedError";
}

/**
 * The model was used after `dispose()`, or while another generation was running on it.
 */
export class ModelStateError extends Error {
  /** Always "ModelStateError". */
  override name = "ModelStateError";
}

/**
 * A buffer is too small for a kernel launch or a tensor's data does not fit its shape. Raised
 * when a program is built, naming the launch, the buffer and both sizes.
 */
export class ShapeError extends Error {
  /** Always "ShapeError". */
  override name = "ShapeError";
}

/**
 * A checkpoint (safetensors file, sharded index, config.json) is malformed or does not fit the
 * model. The message names the file and, where there is one, the tensor.
 */
export class CheckpointError extends Error {
  /** Always "CheckpointError". */
  override name = "CheckpointError";
}

/** A tokenizer or chat template could not be loaded or applied. The message names the file. */
export class TokenizerError extends Error {
  /** Always "TokenizerError". */
  override name = "TokenizerError";
}

/**
 * A value as an error message should show it, with its type where the type is the problem:
 * `5`, `the string "5"`, `null`, `an array of 3`, `an object`.
 */
export function describeValue(v: unknown): string {
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return `a ${typeof v === "object" ? (v.constructor?.name ?? "object") : typeof v}`;
}
