import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/**
 * out[r] = [RMSNorm(h_r) gh ; RMSNorm(e_r) ge] (or token first, `hiddenFirst` false), h_r being
 * row r of `h`, or with `history` row pos[r] + shift of a [capacity, dim] tensor; with `preNorm`
 * h_r is first replaced by RMSNorm(h_r) preNorm.
 */
export function mtpConcat(arena: Arena, o: {
  rows: number;
  dim: number;
  eps: number;
  pos: Tensor;
  h: Tensor;
  history?: { shift: number };
  e: Tensor;
  gh: Tensor;
  ge: Tensor;
  preNorm: Tensor | null;
  hiddenFirst: boolean;
  out: Tensor;
  done?: GPUBuffer;
  label: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "mtp_concat",
    code: wgsl.mtpConcat,
    constants: {
      FROM_HISTORY: o.history !== undefined,
      HIDDEN_FIRST: o.hiddenFirst,
      PRE_NORM: o.preNorm !== null,
    },
    params: [o.rows, o.dim, f32bits(o.eps), (o.history?.shift ?? 0) >>> 0],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["pos", o.pos, "read", o.rows],
      ["h", o.h, "read", (o.history ? 1 : o.rows) * o.dim],
      ["e", o.e, "read", o.rows * o.dim],
      ["gh", o.gh, "read", o.dim],
      ["ge", o.ge, "read", o.dim],
      ["gp", o.preNorm ?? o.gh, "read", o.dim],
      ["out", o.out, "write", o.rows * 2 * o.dim],
    ],
    workgroups: [o.rows],
    label: o.label,
  })];
}
