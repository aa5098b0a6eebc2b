/**
 * Statistics of one generation, from the final decode state and the host's clocks.
 * @module
 */
import { S } from "../kernels/state.ts";

/** Statistics of one generation. */
export interface GenerationStats {
  /** Forward passes after the prompt (decode steps). */
  steps: number;
  /** Tokens generated. */
  tokens: number;
  /**
   * tokens / steps: tokens emitted per forward pass after the prompt, the verifier's own bonus
   * token included, so greedy decoding gives exactly 1 and speculative at most the block size.
   */
  tokensPerStep: number;
  /** tokens / decodeSeconds. */
  tokensPerSecond: number;
  /**
   * One rate per head: head 1 (the trunk's own token) is always 1; head j >= 2 is the fraction of
   * its drafts that the verifier accepted (draft j is accepted only if drafts 2..j-1 were). Heads
   * that proposed nothing (greedy mode) have rate 0.
   */
  headAcceptance: number[];
  /**
   * One rate per draft slot of the block (k - 1 of them): how often draft j was accepted, given
   * that draft j - 1 was (draft 1: of those proposed). 0 where none was proposed or reached.
   */
  draftAcceptance: number[];
  /** Drafts accepted per step, on average: tokensPerStep - 1 but for stops cutting a block. */
  meanAcceptedLength: number;
  /**
   * Per draft slot, the counts behind `draftAcceptance`: drafts proposed, and accepted (with
   * every draft before them), to pool over generations.
   */
  draftCounts: { proposed: number[]; accepted: number[] };
  /** Host-GPU synchronisations (buffer maps and waits), none of them per step. */
  hostSyncs: number;
  /** Seconds from the call to the prompt being processed. */
  prefillSeconds: number;
  /** Seconds from the prompt being processed to the last token being read back. */
  decodeSeconds: number;
  /** GPU time of the decode steps from timestamps (gaps between batches included), if recorded. */
  gpuDecodeSeconds: number | null;
  /** Kernel launches per decode step. */
  dispatchesPerStep: number;
  /** Of those, the launches of the draft source (heads, MTP modules); 0 when greedy. */
  draftDispatchesPerStep: number;
  /** The seed of a sampled generation (the one given, or the random one drawn); absent if greedy. */
  seed?: number;
}

/** The statistics of a generation that emitted `tokens` tokens and ended with `state`. */
export function generationStats(o: {
  state: Uint32Array;
  tokens: number;
  nFuture: number;
  k: number;
  hostSyncs: number;
  /** performance.now() at the call, after the prefill, and when the last token was read. */
  times: [number, number, number];
  gpu: [bigint | null, bigint | null];
  dispatchesPerStep: number;
  draftDispatchesPerStep: number;
}): GenerationStats {
  const st = o.state;
  const steps = st[S.STEPS];
  const headAcceptance = [1];
  for (let j = 0; j < o.nFuture - 1; j++) {
    const proposed = j < o.k - 1 ? st[S.PROPOSED + j] : 0;
    headAcceptance.push(proposed ? st[S.ACCEPTED + j] / proposed : 0);
  }
  const draftAcceptance: number[] = [];
  let accepted = 0;
  for (let j = 0; j < o.k - 1; j++) {
    const given = j === 0 ? st[S.PROPOSED] : st[S.ACCEPTED + j - 1];
    draftAcceptance.push(given ? st[S.ACCEPTED + j] / given : 0);
    accepted += st[S.ACCEPTED + j];
  }
  const [t0, t1, t2] = o.times;
  const decodeSeconds = (t2 - t1) / 1000;
  const [begin, end] = o.gpu;
  return {
    steps,
    tokens: o.tokens,
    tokensPerStep: steps ? o.tokens / steps : 0,
    tokensPerSecond: o.tokens / decodeSeconds,
    headAcceptance,
    draftAcceptance,
    meanAcceptedLength: steps ? accepted / steps : 0,
    draftCounts: {
      proposed: Array.from({ length: o.k - 1 }, (_, j) => st[S.PROPOSED + j]),
      accepted: Array.from({ length: o.k - 1 }, (_, j) => st[S.ACCEPTED + j]),
    },
    hostSyncs: o.hostSyncs,
    prefillSeconds: (t1 - t0) / 1000,
    decodeSeconds,
    gpuDecodeSeconds: begin !== null && end !== null ? Number(end - begin) / 1e9 : null,
    dispatchesPerStep: o.dispatchesPerStep,
    draftDispatchesPerStep: o.draftDispatchesPerStep,
  };
}
