/**
 * The model shapes the benchmarks measure: presets from model/presets.ts.
 * @module
 */
import type { ModelConfigInput } from "../model/config.ts";
import { preset } from "../model/presets.ts";

/**
 * (a) a Llama-shaped ~1.1B f16 model and (b) a small one, with 4 heads each; with `quick`, two
 * tiny models that a software GPU can run.
 */
export function benchModels(quick: boolean, maxSeqLen: number): Record<string, ModelConfigInput> {
  return quick
    ? { "tiny-a": preset("quick-a", { maxSeqLen }), "tiny-b": preset("quick-b", { maxSeqLen }) }
    : {
      "1.1B": preset("bench-1.1b", { maxSeqLen }),
      "small": preset("bench-small", { maxSeqLen }),
    };
}
