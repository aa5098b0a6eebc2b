import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, makeDispatch } from "../kernels/dispatch.ts";
import { S, STATE_WGSL } from "../kernels/state.ts";
import * as wgsl from "./wgsl.ts";

/** Writes drafts 1..k-1 of the next block from a fixed continuation of the prompt. */
export function replay(arena: Arena, o: {
  state: Tensor;
  continuation: Tensor;
  count: number;
  promptLen: number;
  ids: Tensor;
  k: number;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "replay",
    code: STATE_WGSL + wgsl.replay,
    params: [o.k, o.promptLen, o.count],
    bindings: [
      ["state", o.state, "read", S.WORDS],
      ["continuation", o.continuation, "read", Math.max(1, o.count)],
      ["ids", o.ids, "write", o.k],
    ],
    workgroups: [1],
    label: o.label ?? "replay",
  })];
}
