/**
 * CPU versions of the decode loop's kernels (verify, replay), on the same state layout: the
 * ground truth of their direct tests.
 * @module
 */
import { NO_TOKEN, S } from "../kernels/state.ts";

/**
 * One verify step on copies of its buffers (see verify.wgsl): returns the new state, ids,
 * tokens and positions.
 */
export function verifyRef(o: {
  state: Uint32Array;
  picks: readonly number[];
  ids: readonly number[];
  tokens: Uint32Array;
  k: number;
}): { state: Uint32Array; ids: number[]; tokens: Uint32Array; positions: number[] | null } {
  const state = o.state.slice();
  const tokens = o.tokens.slice();
  const ids = [...o.ids];
  if (state[S.DONE] !== 0) return { state, ids, tokens, positions: null };
  const stops = Array.from(state.subarray(S.STOP, S.STOP + state[S.NSTOP]));
  let len = state[S.LEN];
  let row = 0;
  for (;;) {
    const t = o.picks[row];
    tokens[len++] = t;
    if (stops.includes(t) || len >= state[S.LIMIT]) {
      state[S.DONE] = 1;
      break;
    }
    if (row + 1 >= o.k || ids[row + 1] !== t) break;
    row++;
  }
  let matched = true;
  for (let j = 1; j < o.k; j++) {
    if (ids[j] !== NO_TOKEN) state[S.PROPOSED + j - 1]++;
    matched = matched && ids[j] === o.picks[j - 1];
    if (matched) state[S.ACCEPTED + j - 1]++;
  }
  state[S.GENERATED] += len - state[S.LEN];
  state[S.LEN] = len;
  state[S.HEAD_ROW] = row;
  state[S.STEPS]++;
  const next = [tokens[len - 1], ...new Array(o.k - 1).fill(NO_TOKEN)];
  return {
    state,
    ids: next,
    tokens,
    positions: Array.from({ length: o.k }, (_, j) => len - 1 + j),
  };
}

/** The drafts replay.wgsl writes: ids[1..k) from `continuation` at the state's length. */
export function replayRef(o: {
  state: Uint32Array;
  continuation: readonly number[];
  promptLen: number;
  k: number;
}): number[] {
  const out: number[] = [];
  for (let j = 1; j < o.k; j++) {
    const i = o.state[S.LEN] - 1 + j - o.promptLen;
    out.push(i >= 0 && i < o.continuation.length ? o.continuation[i] : NO_TOKEN);
  }
  return out;
}

/** The high 32 bits of a * b, for u32 a and b. */
function mulHi32(a: number, b: number): number {
  return Number((BigInt(a >>> 0) * BigInt(b >>> 0)) >> 32n);
}

/** Philox4x32-10 as sample.wgsl runs it: first word of the block for counter (c0, c1). */
export function philoxRef(seed: number, c0: number, c1: number): number {
  let c = [c0 >>> 0, c1 >>> 0, 0x9e3779b9, 0];
  let k0 = (seed % 2 ** 32) >>> 0, k1 = Math.floor(seed / 2 ** 32) >>> 0;
  for (let i = 0; i < 10; i++) {
    const p0 = Math.imul(c[0], 0xD2511F53) >>> 0, h0 = mulHi32(c[0], 0xD2511F53);
    const p1 = Math.imul(c[2], 0xCD9E8D57) >>> 0, h1 = mulHi32(c[2], 0xCD9E8D57);
    c = [(h1 ^ c[1] ^ k0) >>> 0, p1, (h0 ^ c[3] ^ k1) >>> 0, p0];
    k0 = (k0 + 0x9E3779B9) >>> 0;
    k1 = (k1 + 0xBB67AE85) >>> 0;
  }
  return c[0];
}

/** The uniform draw in [0, 1) sample.wgsl uses at a position for a purpose (0 sample, 1 accept). */
export function rand01Ref(seed: number, position: number, purpose: number): number {
  return (philoxRef(seed, position, purpose) >>> 8) / 16777216;
}

/**
 * The distribution sample.wgsl draws from for one row (in f64): probabilities over the vocabulary
 * after the repetition penalty (on `context`), the temperature and the top-k, top-p and min-p
 * cuts; at temperature 0, all mass on the lowest-index argmax.
 */
export function sampleDistributionRef(
  logits: ArrayLike<number>,
  o: {
    temperature: number;
    topK: number;
    topP: number;
    minP: number;
    repetitionPenalty: number;
    context: readonly number[];
  },
): Float64Array {
  const v = logits.length;
  const seen = new Set(o.context);
  const z = Float64Array.from({ length: v }, (_, t) => {
    let l = Math.fround(logits[t]);
    if (o.repetitionPenalty !== 1 && seen.has(t)) {
      l = l > 0 ? l / o.repetitionPenalty : l * o.repetitionPenalty;
    }
    return o.temperature > 0 ? l / o.temperature : l;
  });
  const out = new Float64Array(v);
  let best = 0;
  for (let t = 1; t < v; t++) if (z[t] > z[best]) best = t;
  if (o.temperature === 0) {
    out[best] = 1;
    return out;
  }
  const order = Array.from({ length: v }, (_, t) => t).sort((a, b) => z[b] - z[a]);
  let keep = new Set(order);
  if (o.topK > 0 && o.topK < v) {
    const kth = z[order[o.topK - 1]];
    keep = new Set(order.filter((t) => z[t] >= kth));
  }
  const e = Float64Array.from(z, (x) => Math.exp(x - z[best]));
  if (o.topP < 1) {
    const total = [...keep].reduce((s, t) => s + e[t], 0);
    // The largest threshold whose tokens at or above it hold topP of the mass (ties kept).
    let s = 0, cut = -Infinity;
    for (const t of order.filter((t) => keep.has(t))) {
      s += e[t];
      if (s >= o.topP * total) {
        cut = z[t];
        break;
      }
    }
    keep = new Set([...keep].filter((t) => z[t] >= cut));
  }
  if (o.minP > 0) keep = new Set([...keep].filter((t) => e[t] >= o.minP));
  let kept = 0;
  for (const t of keep) kept += e[t];
  for (const t of keep) out[t] = e[t] / kept;
  return out;
}

/**
 * Prompt-lookup drafts as lookup.wgsl makes them: drafts 1 .. k-1 after the latest earlier
 * occurrence of the last n tokens of `tokens`, n from maxN down to minN; null where nothing
 * matches.
 */
export function lookupRef(
  tokens: readonly number[],
  k: number,
  maxN: number,
  minN: number,
): number[] | null {
  const len = tokens.length;
  for (let n = maxN; n >= minN; n--) {
    if (len <= n) continue;
    for (let j = len - 2; j >= n - 1; j--) {
      let same = true;
      for (let i = 0; i < n && same; i++) same = tokens[j - i] === tokens[len - 1 - i];
      if (same) {
        return Array.from(
          { length: k - 1 },
          (_, i) => j + 1 + i < len ? tokens[j + 1 + i] : NO_TOKEN,
        );
      }
    }
  }
  return null;
}
