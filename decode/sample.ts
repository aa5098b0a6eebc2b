import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, f32bits, makeDispatch } from "../kernels/dispatch.ts";
import { S, STATE_WGSL } from "../kernels/state.ts";
import * as wgsl from "./wgsl.ts";

/** How tokens are drawn; temperature 0 is greedy. See {@link GenerateOptions} for each field. */
export interface Sampling {
  /** Divides the logits; 0: the argmax. */
  temperature: number;
  /** Keep the k most likely tokens; 0: all. */
  topK: number;
  /** Keep the smallest most-likely set holding this much probability; 1: all. */
  topP: number;
  /** Keep tokens at least this times as likely as the most likely one; 0: all. */
  minP: number;
  /** Divides positive and multiplies negative logits of tokens already in the context; 1: none. */
  repetitionPenalty: number;
  /** Keys the random numbers (with the position): an integer in [0, 2^53). */
  seed: number;
}

/**
 * For the statistical test only: `acceptAllDrafts` makes every generation started while it is set
 * accept every draft (a broken rule the test must catch).
 */
export const SAMPLING_TEST_HOOKS: { acceptAllDrafts: boolean } = { acceptAllDrafts: false };

/**
 * picks[r] for each row of a verify block: a sample of the trunk's (penalized, tempered, cut)
 * distribution, or the row's draft ids[r + 1] when speculative sampling accepts it; see
 * sample.wgsl. `seen` is scratch for the repetition penalty: [rows, ceil(vocab / 32)] u32.
 * `acceptAll` breaks the acceptance rule (every draft accepted): the statistical test's control.
 */
export function sample(arena: Arena, o: {
  state: Tensor;
  logits: Tensor;
  ids: Tensor;
  positions: Tensor;
  tokens: Tensor;
  seen: Tensor;
  picks: Tensor;
  /** Scratch [rows, vocab]: each row's scaled logits, computed once. */
  z: Tensor;
  rows: number;
  vocab: number;
  sampling: Sampling;
  acceptAll?: boolean;
  label?: string;
}): Dispatch[] {
  const s = o.sampling;
  const words = Math.ceil(o.vocab / 32);
  return [makeDispatch(arena, {
    kernel: "sample",
    code: STATE_WGSL + wgsl.sample,
    constants: { ACCEPT_ALL: !!o.acceptAll },
    params: [
      o.rows,
      o.vocab,
      words,
      f32bits(s.temperature),
      s.topK > 0 ? Math.min(s.topK, o.vocab) : o.vocab,
      f32bits(s.topP),
      f32bits(s.minP),
      f32bits(s.repetitionPenalty),
      s.seed % 2 ** 32,
      Math.floor(s.seed / 2 ** 32),
    ],
    bindings: [
      ["state", o.state, "read", S.WORDS],
      ["logits", o.logits, "read", o.rows * o.vocab],
      ["ids", o.ids, "read", o.rows],
      ["positions", o.positions, "read", o.rows],
      ["tokens", o.tokens, "read", 1],
      ["seen", o.seen, "write", o.rows * words],
      ["picks", o.picks, "write", o.rows],
      ["z", o.z, "write", o.rows * o.vocab],
    ],
    workgroups: [o.rows],
    label: o.label ?? "sample",
  })];
}
