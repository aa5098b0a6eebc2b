/**
 * The initialisation for training from scratch (GPT-2 / Llama practice): norm weights 1, the
 * embedding (tied with the unembedding) small, matrices 1/sqrt(fan-in), and the projections that
 * write into the residual stream (o_proj, down_proj) scaled by 1/sqrt(2 layers) so the stream's
 * variance does not grow with depth; Medusa ResBlock matrices 0 (Medusa's choice: v = u at first).
 * createModel's random weights exist for tests instead: all drawn, none constant.
 * @module
 */
import type { Model } from "../heads/model.ts";

/** Fills `model` with a seeded initialisation for training from scratch. */
export function initForTraining(model: Model, seed: number): void {
  const layers = model.config.nLayers + model.config.nFuture - 1;
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
  for (const [name, shape] of model.tensorShapes()) {
    const n = shape.reduce((x, y) => x * y, 1);
    const data = new Float32Array(n);
    if (name.endsWith("norm.weight")) data.fill(1);
    else if (/^medusa_head\.\d+\.0\.linear\.weight$/.test(name)) {
      // Medusa's ResBlocks start at zero, so each head starts as the next-token prediction.
    } else if (!name.endsWith(".bias")) {
      let std = name === "model.embed_tokens.weight" ? 0.02 : 1 / Math.sqrt(shape[1]);
      if (/o_proj|down_proj/.test(name)) std /= Math.sqrt(2 * layers);
      // A uniform draw of standard deviation std spans +-std sqrt(3).
      for (let i = 0; i < n; i++) data[i] = uniform() * 2 * Math.sqrt(3) * std;
    }
    model.setTensor(name, data);
  }
}
