import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, grid, makeDispatch } from "./dispatch.ts";
import { type Columns, columns } from "./silu_residual.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Backward of `siluResidual()`'s silu: dx[r, offset + i] = dy[r, i] silu'(x[r, offset + i]),
 * writing only those columns of dx (rows `stride` floats apart). The residual's gradient is dy
 * itself, for the caller to add.
 */
export function siluBackward(
  arena: Arena,
  o: Columns & {
    /** [rows, stride] the forward's pre-activations. */
    x: Tensor;
    /** [rows, n] the gradient of the forward's output. */
    dy: Tensor;
    /** [rows, stride] receives the gradient of x in the window's columns. */
    dx: Tensor;
    rows: number;
    n: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const label = o.label ?? "silu_backward";
  const [stride, offset] = columns(label, o.n, o);
  return [makeDispatch(arena, {
    kernel: "silu_backward",
    code: wgsl.siluBackward,
    params: [o.rows, o.n, stride, offset],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["x", o.x, "read", o.rows * stride],
      ["dy", o.dy, "read", o.rows * o.n],
      ["dx", o.dx, "write", o.rows * stride],
    ],
    workgroups: [Math.ceil(o.n / 256), ...grid(o.rows)],
    label,
  })];
}
