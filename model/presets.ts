/**
 * Named model shapes, in one place: the benchmarks, the tests and the examples use these.
 * @module
 */
import type { ModelConfigInput } from "./config.ts";

/** The shapes by name; `maxSeqLen` and `nFuture` are usually overridden by the caller. */
export const PRESETS = {
  /** Llama-shaped, 1.1B parameters (TinyLlama's shape): the benchmark's model (a). */
  "bench-1.1b": {
    vocabSize: 32000,
    dModel: 2048,
    nLayers: 16,
    nHeads: 32,
    nKvHeads: 8,
    dFF: 8192,
    maxSeqLen: 2048,
    nFuture: 4,
    dtype: "f16",
  },
  /** 58M parameters, where per-step overhead decides: the benchmark's model (b). */
  "bench-small": {
    vocabSize: 32000,
    dModel: 512,
    nLayers: 8,
    nHeads: 8,
    nKvHeads: 4,
    dFF: 1536,
    maxSeqLen: 2048,
    nFuture: 4,
    dtype: "f16",
  },
  /** The benchmark's stand-in for (a) on a software GPU (`deno task bench --quick`). */
  "quick-a": {
    vocabSize: 512,
    dModel: 128,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    dFF: 256,
    maxSeqLen: 2048,
    nFuture: 4,
    dtype: "f16",
  },
  /** The benchmark's stand-in for (b) on a software GPU. */
  "quick-b": {
    vocabSize: 256,
    dModel: 64,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    dFF: 128,
    maxSeqLen: 2048,
    nFuture: 4,
    dtype: "f16",
  },
  /** Byte vocabulary, random weights: what examples/generate.ts runs until a trained model ships. */
  "demo": {
    vocabSize: 256,
    dModel: 64,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    dFF: 192,
    maxSeqLen: 2048,
    nFuture: 4,
    headKind: "transformer",
  },
  /**
   * The test suite's shape: sizes that are multiples of no workgroup size, grouped-query
   * attention, headDim set explicitly.
   */
  "tiny-odd": {
    vocabSize: 67,
    dModel: 24,
    nLayers: 2,
    nHeads: 3,
    nKvHeads: 1,
    headDim: 8,
    dFF: 40,
    maxSeqLen: 96,
    nFuture: 3,
  },
} as const satisfies Record<string, ModelConfigInput>;

/** A preset's name. */
export type PresetName = keyof typeof PRESETS;

/** The preset `name` with `changes` applied, e.g. `preset("bench-small", { maxSeqLen: 544 })`. */
export function preset(
  name: PresetName,
  changes: Partial<ModelConfigInput> = {},
): ModelConfigInput {
  return { ...PRESETS[name], ...changes };
}
