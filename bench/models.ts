/**
 * The model shapes the benchmarks measure: presets from model/presets.ts.
 * @module
 */
import type { ModelConfigInput } from "../model/config.ts";
import { preset } from "../model/presets.ts";

/**
 * (a) a Llama-shaped ~1.1B model in f16, q8 and q4 and (b) a small one in f16 and q4, with 4
 * heads each; with `quick`, two tiny models (and the first in q4) that a software GPU can run.
 */
export function benchModels(quick: boolean, maxSeqLen: number): Record<string, ModelConfigInput> {
  return quick
    ? {
      "tiny-a": preset("quick-a", { maxSeqLen }),
      "tiny-a q4": preset("quick-a", { maxSeqLen, dtype: "q4" }),
      "tiny-b": preset("quick-b", { maxSeqLen }),
    }
    : {
      "1.1B": preset("bench-1.1b", { maxSeqLen }),
      "1.1B q8": preset("bench-1.1b", { maxSeqLen, dtype: "q8" }),
      "1.1B q4": preset("bench-1.1b", { maxSeqLen, dtype: "q4" }),
      "small": preset("bench-small", { maxSeqLen }),
      "small q4": preset("bench-small", { maxSeqLen, dtype: "q4" }),
    };
}
