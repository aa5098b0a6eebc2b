import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import { type Dispatch, doneFlag, grid, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** The column window of `x` a silu launch reads: columns [offset, offset + n) of rows of `stride`. */
export interface Columns {
  /** Floats per row of x (default n). */
  stride?: number;
  /** First column of x used (default 0). */
  offset?: number;
}

/** stride and offset of a column window, checked against n. */
export function columns(label: string, n: number, c: Columns): [number, number] {
  const stride = c.stride ?? n, offset = c.offset ?? 0;
  if (offset + n > stride) {
    throw new ShapeError(`${label}: columns ${offset}..${offset + n} exceed rows of ${stride}`);
  }
  return [stride, offset];
}

/**
 * out[r, i] = res[r, i] + silu(x[r, offset + i]) for r < rows, i < n, with x's rows `stride`
 * floats apart: Medusa's ResBlock on one head's columns of the stacked pre-activations.
 */
export function siluResidual(
  arena: Arena,
  o: Columns & {
    /** [rows, stride] pre-activations. */
    x: Tensor;
    /** [rows, n] the residual. */
    res: Tensor;
    /** [rows, n] */
    out: Tensor;
    rows: number;
    n: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const label = o.label ?? "silu_residual";
  const [stride, offset] = columns(label, o.n, o);
  return [makeDispatch(arena, {
    kernel: "silu_residual",
    code: wgsl.siluResidual,
    params: [o.rows, o.n, stride, offset],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["x", o.x, "read", o.rows * stride],
      ["res", o.res, "read", o.rows * o.n],
      ["out", o.out, "write", o.rows * o.n],
    ],
    workgroups: [Math.ceil(o.n / 256), ...grid(o.rows)],
    label,
  })];
}
