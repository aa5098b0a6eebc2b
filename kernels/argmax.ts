import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** out[outOffset + r] = argmax of logits row r (lowest index on ties), for r < rows. */
export function argmax(arena: Arena, o: {
  logits: Tensor;
  out: Tensor;
  rows: number;
  n: number;
  outOffset?: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const outOffset = o.outOffset ?? 0;
  return [makeDispatch(arena, {
    kernel: "argmax",
    code: wgsl.argmax,
    params: [o.rows, o.n, outOffset],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["logits", o.logits, "read", o.rows * o.n],
      ["out", o.out, "write", outOffset + o.rows],
    ],
    workgroups: [o.rows],
    label: o.label ?? "argmax",
  })];
}
