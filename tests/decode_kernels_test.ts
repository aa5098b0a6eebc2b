import assert from "node:assert/strict";
import { run } from "../kernels/dispatch.ts";
import { NO_TOKEN, S } from "../kernels/state.ts";
import { verify } from "../decode/verify.ts";
import { replay } from "../decode/replay.ts";
import { replayRef, verifyRef } from "../decode/reference.ts";
import { readU32, stateTensor, testArena, u32 } from "./helpers.ts";

interface Case {
  what: string;
  k: number;
  len: number;
  limit: number;
  stop?: number[];
  ids: number[];
  picks: number[];
  done?: boolean;
}

const CAPACITY = 40;

async function runVerify(c: Case) {
  const a = await testArena();
  const words: Record<number, number> = {
    [S.LEN]: c.len,
    [S.LIMIT]: c.limit,
    [S.NSTOP]: c.stop?.length ?? 0,
  };
  (c.stop ?? []).forEach((t, i) => words[S.STOP + i] = t);
  if (c.done) words[S.DONE] = 1;
  words[S.PROPOSED] = 5; // counters accumulate over steps
  const state = stateTensor(a, words);
  const tokensInit = Uint32Array.from({ length: CAPACITY }, (_, i) => i < c.len ? 100 + i : 0);
  const tokens = a.tensor("tokens", [CAPACITY], "u32", tokensInit);
  const ids = u32(a, c.ids);
  const positions = u32(a, new Array(c.k).fill(777));
  run(a.gpu, verify(a, { state, picks: u32(a, c.picks), ids, tokens, positions, k: c.k }), "t");
  const stateInit = new Uint32Array(S.WORDS);
  for (const [i, v] of Object.entries(words)) stateInit[Number(i)] = v;
  const ref = verifyRef({
    state: stateInit,
    picks: c.picks,
    ids: c.ids,
    tokens: tokensInit,
    k: c.k,
  });
  assert.deepEqual(await readU32(a, state, S.WORDS), ref.state, `${c.what}: state`);
  assert.deepEqual(await readU32(a, tokens, CAPACITY), ref.tokens, `${c.what}: tokens`);
  assert.deepEqual(Array.from(await readU32(a, ids, c.k)), ref.ids, `${c.what}: ids`);
  const pos = Array.from(await readU32(a, positions, c.k));
  assert.deepEqual(pos, ref.positions ?? new Array(c.k).fill(777), `${c.what}: positions`);
  return ref;
}

Deno.test("verify() matches its CPU reference: accepted prefix, bonus token, next block", async () => {
  // drafts 7, 8 agree with the picks, 5 does not: emit 7, 8, then the bonus 9.
  const r = await runVerify({
    what: "partial accept",
    k: 4,
    len: 10,
    limit: 30,
    ids: [3, 7, 8, 5],
    picks: [7, 8, 9, 6],
  });
  assert.deepEqual(Array.from(r.tokens.subarray(10, 13)), [7, 8, 9]);
  assert.equal(r.state[S.LEN], 13);
  assert.equal(r.state[S.HEAD_ROW], 2);
  assert.deepEqual(r.positions, [12, 13, 14, 15]);
  assert.deepEqual(r.ids, [9, NO_TOKEN, NO_TOKEN, NO_TOKEN]);
});

Deno.test("verify() stops at a stop id in the middle of an accepted block", async () => {
  const r = await runVerify({
    what: "stop mid-block",
    k: 4,
    len: 10,
    limit: 30,
    stop: [50, 8],
    ids: [3, 7, 8, 9],
    picks: [7, 8, 9, 10],
  });
  assert.equal(r.state[S.DONE], 1);
  assert.deepEqual(Array.from(r.tokens.subarray(10, 13)), [7, 8, 0], "nothing after the stop id");
});

Deno.test("verify() counts NO_TOKEN drafts as not proposed, and accepts none of them", async () => {
  const r = await runVerify({
    what: "empty slots",
    k: 4,
    len: 5,
    limit: 30,
    ids: [3, 7, NO_TOKEN, NO_TOKEN],
    picks: [7, 2, 2, 2],
  });
  assert.equal(r.state[S.LEN], 7);
  assert.deepEqual([r.state[S.PROPOSED], r.state[S.PROPOSED + 1], r.state[S.PROPOSED + 2]], [
    6,
    0,
    0,
  ]);
  assert.deepEqual([r.state[S.ACCEPTED], r.state[S.ACCEPTED + 1]], [1, 0]);
});

Deno.test("verify() stops at the length limit inside an accepted block", async () => {
  const r = await runVerify({
    what: "limit",
    k: 4,
    len: 10,
    limit: 12,
    ids: [3, 7, 8, 9],
    picks: [7, 8, 9, 10],
  });
  assert.equal(r.state[S.DONE], 1);
  assert.equal(r.state[S.LEN], 12);
  assert.equal(r.state[S.GENERATED], 2);
});

Deno.test("verify() does nothing once the state is done", async () => {
  const r = await runVerify({
    what: "done",
    k: 2,
    len: 10,
    limit: 30,
    ids: [3, 7],
    picks: [7, 8],
    done: true,
  });
  assert.equal(r.state[S.LEN], 10);
});

Deno.test("replay() writes the continuation at the sequence's length, NO_TOKEN past its end", async () => {
  const a = await testArena();
  const continuation = [11, 12, 13, 14, 15];
  for (const len of [4, 6, 8, 12]) {
    const k = 4, promptLen = 4;
    const state = stateTensor(a, { [S.LEN]: len });
    const ids = u32(a, [1, 0, 0, 0]);
    run(
      a.gpu,
      replay(a, { state, continuation: u32(a, continuation), count: 5, promptLen, ids, k }),
      "t",
    );
    const words = new Uint32Array(S.WORDS);
    words[S.LEN] = len;
    const want = replayRef({ state: words, continuation, promptLen, k });
    assert.deepEqual(Array.from(await readU32(a, ids, k)), [1, ...want], `len ${len}`);
  }
  const words = new Uint32Array(S.WORDS);
  words[S.LEN] = 8;
  assert.deepEqual(replayRef({ state: words, continuation, promptLen: 4, k: 4 }), [
    15,
    NO_TOKEN,
    NO_TOKEN,
  ]);
});
