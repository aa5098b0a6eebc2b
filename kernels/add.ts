import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, grid, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** out[i] = a[i] + b[i] for i < n. */
export function add(arena: Arena, o: {
  a: Tensor;
  b: Tensor;
  out: Tensor;
  n: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "add",
    code: wgsl.add,
    params: [o.n],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["a", o.a, "read", o.n],
      ["b", o.b, "read", o.n],
      ["out", o.out, "write", o.n],
    ],
    workgroups: grid(Math.ceil(o.n / 256)),
    label: o.label ?? "add",
  })];
}
