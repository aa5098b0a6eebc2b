import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, grid, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * y[i] += a x[i] for i < n (a defaults to 1): gradient accumulation, e.g. a residual add's
 * backward (the identity) adding its gradient into the branch's, or heads adding theirs into
 * the trunk's.
 */
export function axpy(arena: Arena, o: {
  x: Tensor;
  /** Updated in place; a different buffer from x. */
  y: Tensor;
  n: number;
  a?: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "axpy",
    code: wgsl.axpy,
    params: [o.n, f32bits(o.a ?? 1)],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["x", o.x, "read", o.n],
      ["y", o.y, "write", o.n],
    ],
    workgroups: grid(Math.ceil(o.n / 256)),
    label: o.label ?? "axpy",
  })];
}
