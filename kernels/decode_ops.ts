import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, makeDispatch } from "./dispatch.ts";
import argmaxCode from "./argmax.wgsl" with { type: "text" };
import verifyCode from "./verify.wgsl" with { type: "text" };
import replayCode from "./replay.wgsl" with { type: "text" };

/** out[outOffset + r] = argmax of logits row r (lowest index on ties), for r < rows. */
export function argmax(gpu: Gpu, o: {
  state: GPUBuffer;
  logits: GPUBuffer;
  out: GPUBuffer;
  rows: number;
  n: number;
  outOffset?: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "argmax",
    code: argmaxCode,
    params: [o.rows, o.n, o.outOffset ?? 0],
    buffers: [[o.state, "read"], [o.logits, "read"], [o.out, "write"]],
    workgroups: [o.rows],
    label: o.label ?? "argmax",
  });
}

/**
 * The verifier: accepts the longest prefix of drafts the trunk agrees with, appends the accepted
 * drafts and the bonus token to `tokens`, checks stop conditions, and sets up the next block.
 */
export function verify(gpu: Gpu, o: {
  state: GPUBuffer;
  picks: GPUBuffer;
  ids: GPUBuffer;
  tokens: GPUBuffer;
  k: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "verify",
    code: verifyCode,
    params: [o.k],
    buffers: [[o.state, "write"], [o.picks, "read"], [o.ids, "write"], [o.tokens, "write"]],
    workgroups: [1],
    label: o.label ?? "verify",
  });
}

/** Writes drafts 1..k-1 of the next block from a fixed continuation of the prompt. */
export function replay(gpu: Gpu, o: {
  state: GPUBuffer;
  continuation: GPUBuffer;
  count: number;
  promptLen: number;
  ids: GPUBuffer;
  k: number;
  label?: string;
}): Dispatch {
  return makeDispatch(gpu, {
    kernel: "replay",
    code: replayCode,
    params: [o.k, o.promptLen, o.count],
    buffers: [[o.state, "read"], [o.continuation, "read"], [o.ids, "write"]],
    workgroups: [1],
    label: o.label ?? "replay",
  });
}
