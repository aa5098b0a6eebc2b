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
