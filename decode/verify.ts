import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, makeDispatch } from "../kernels/dispatch.ts";
import { S, STATE_WGSL } from "../kernels/state.ts";
import * as wgsl from "./wgsl.ts";

/**
 * The verifier: accepts the longest prefix of drafts the trunk agrees with, appends the accepted
 * drafts and the bonus token to `tokens`, checks stop conditions, and sets up the next block
 * (its first id, its positions, the row the draft heads read). See verify.wgsl.
 */
export function verify(arena: Arena, o: {
  state: Tensor;
  picks: Tensor;
  ids: Tensor;
  tokens: Tensor;
  positions: Tensor;
  k: number;
  label?: string;
}): Dispatch[] {
  const capacity = o.tokens.shape[0];
  return [makeDispatch(arena, {
    kernel: "verify",
    code: STATE_WGSL + wgsl.verify,
    params: [o.k],
    bindings: [
      ["state", o.state, "write", S.WORDS],
      ["picks", o.picks, "read", o.k],
      ["ids", o.ids, "write", o.k],
      ["tokens", o.tokens, "write", capacity],
      ["positions", o.positions, "write", o.k],
    ],
    workgroups: [1],
    label: o.label ?? "verify",
  })];
}
