import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, makeDispatch } from "../kernels/dispatch.ts";
import { S, STATE_WGSL } from "../kernels/state.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Prompt-lookup drafts (see lookup.wgsl): ids[1 .. k-1] = what followed the latest earlier
 * occurrence of the sequence's last n tokens, n from maxN down to minN; with `keepUnlessFound`
 * the ids stay as they were when nothing matches.
 */
export function lookup(arena: Arena, o: {
  state: Tensor;
  tokens: Tensor;
  ids: Tensor;
  k: number;
  maxN: number;
  minN: number;
  keepUnlessFound?: boolean;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "lookup",
    code: STATE_WGSL + wgsl.lookup,
    constants: { KEEP_UNLESS_FOUND: !!o.keepUnlessFound },
    params: [o.k, o.maxN, o.minN],
    bindings: [
      ["state", o.state, "read", S.WORDS],
      ["tokens", o.tokens, "read", o.tokens.shape[0]],
      ["ids", o.ids, "write", o.k],
    ],
    workgroups: [1],
    label: o.label ?? "lookup",
  })];
}
