/**
 * The whole model on the CPU in f64: the trunk's reference (model/reference.ts) plus each head
 * kind's own. The ground truth for tiny configurations.
 * @module
 */
import type { ModelConfig } from "../model/config.ts";
import { type Tensors, trunkRef, unembedRef } from "../model/reference.ts";
import { headKind } from "./registry.ts";

/**
 * Logits of every head at every position of `tokens`: [head][position * vocab + id], head 1
 * first, the layout of `forward`.
 */
export function referenceForward(
  c: ModelConfig,
  t: Tensors,
  tokens: readonly number[],
): Float64Array[] {
  const h = trunkRef(c, t, tokens);
  return [unembedRef(c, t, h), ...headKind(c).reference(c, t, { h, tokens })];
}

/** Greedy continuation by the reference: argmax of head 1 at the last position, repeated. */
export function referenceGreedy(
  c: ModelConfig,
  t: Tensors,
  prompt: readonly number[],
  maxTokens: number,
): number[] {
  const seq = [...prompt];
  const out: number[] = [];
  const v = c.vocabSize;
  for (let i = 0; i < maxTokens && seq.length < c.maxSeqLen; i++) {
    const logits = unembedRef(c, t, trunkRef(c, t, seq));
    const last = logits.subarray((seq.length - 1) * v, seq.length * v);
    let best = 0;
    for (let j = 1; j < v; j++) if (last[j] > last[best]) best = j;
    seq.push(best);
    out.push(best);
  }
  return out;
}
