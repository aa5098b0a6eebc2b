/**
 * The head kinds by name, and what depends on the whole list: config validation, the tensor
 * list of a model and its parameter count. A new kind is one file plus one line here.
 * @module
 */
import { type ModelConfig, parseConfigFields } from "../model/config.ts";
import { trunkTensorShapes } from "../model/weights.ts";
import type { HeadKind } from "./kind.ts";
import { medusaHeads } from "./medusa.ts";
import { sequentialHeads } from "./sequential.ts";
import { transformerHeads } from "./transformer.ts";

/** Every head kind, by the name `config.headKind` gives. */
export const HEAD_KINDS: Readonly<Record<string, HeadKind>> = {
  transformer: transformerHeads as HeadKind,
  medusa: medusaHeads as HeadKind,
  sequential: sequentialHeads as HeadKind,
};

/** The kind named by `config.headKind` (validated by {@link parseConfig}). */
export function headKind(c: ModelConfig): HeadKind {
  return HEAD_KINDS[c.headKind];
}

/**
 * Validates a model configuration and fills in defaults.
 *
 * @throws {ConfigError} naming each bad field, the allowed values and the value given.
 * @example
 * ```ts
 * import { parseConfig } from "@ahead/mtp";
 * const c = parseConfig({ vocabSize: 32000, dModel: 2048, nLayers: 16, nHeads: 32, nKvHeads: 8, dFF: 8192, maxSeqLen: 2048 });
 * console.log(c.headDim, c.nFuture); // 64 4
 * ```
 */
export function parseConfig(input: unknown): ModelConfig {
  return parseConfigFields(input, Object.keys(HEAD_KINDS));
}

/** Every tensor of a model under its checkpoint name, with its shape: trunk, then heads 2..n. */
export function tensorShapes(c: ModelConfig): [string, number[]][] {
  return [...trunkTensorShapes(c), ...headKind(c).tensorShapes(c)];
}

/** Number of parameters of a model with this configuration, heads included. */
export function countParameters(c: ModelConfig): number {
  return tensorShapes(c).reduce((s, [, shape]) => s + shape.reduce((a, b) => a * b, 1), 0);
}
