/**
 * The model shapes the benchmarks measure, in one place.
 * @module
 */
import type { ModelConfigInput } from "../model/config.ts";

/**
 * (a) a Llama-shaped ~1.1B f16 model and (b) a small one, with 4 heads each; with `quick`, two
 * tiny models that a software GPU can run.
 */
export function benchModels(quick: boolean, maxSeqLen: number): Record<string, ModelConfigInput> {
  const f16 = { maxSeqLen, nFuture: 4, dtype: "f16" as const };
  return quick
    ? {
      "tiny-a": {
        vocabSize: 512,
        dModel: 128,
        nLayers: 2,
        nHeads: 4,
        nKvHeads: 2,
        dFF: 256,
        ...f16,
      },
      "tiny-b": {
        vocabSize: 256,
        dModel: 64,
        nLayers: 2,
        nHeads: 4,
        nKvHeads: 2,
        dFF: 128,
        ...f16,
      },
    }
    : {
      "1.1B": {
        vocabSize: 32000,
        dModel: 2048,
        nLayers: 16,
        nHeads: 32,
        nKvHeads: 8,
        dFF: 8192,
        ...f16,
      },
      "small": {
        vocabSize: 32000,
        dModel: 512,
        nLayers: 8,
        nHeads: 8,
        nKvHeads: 4,
        dFF: 1536,
        ...f16,
      },
    };
}
