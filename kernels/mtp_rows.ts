import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import type { GpuIndex } from "./gather_rows.ts";
import { STATE_WGSL } from "./state.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Positions and token ids of one run of a sequential MTP module (see mtp_rows.wgsl): row r sits
 * at q = positions[0] + start + r (less headRow + 1 when given) and embeds src[q + ahead] (less
 * positions[0] with `fromIds`); rows before position 0 go to `trash`, position 0 embeds nothing.
 */
export function mtpRows(arena: Arena, o: {
  rows: number;
  start: number;
  headRow?: GpuIndex;
  positions: Tensor;
  ahead: number;
  src: Tensor;
  srcLen: number;
  fromIds: boolean;
  trash: number;
  outPos: Tensor;
  outTok: Tensor;
  done?: GPUBuffer;
  label: string;
}): Dispatch[] {
  const head = o.headRow ?? { buffer: o.positions.buffer, at: 0 };
  return [makeDispatch(arena, {
    kernel: "mtp_rows",
    code: STATE_WGSL + wgsl.mtpRows,
    params: [
      o.rows,
      o.start >>> 0,
      o.headRow ? 1 : 0,
      head.at,
      o.ahead,
      o.fromIds ? 1 : 0,
      o.srcLen,
      o.trash,
    ],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["headRow", head.buffer, "read", head.at + 1],
      ["positions", o.positions, "read", 1],
      ["src", o.src, "read", o.srcLen],
      ["outPos", o.outPos, "write", o.rows],
      ["outTok", o.outTok, "write", o.rows],
    ],
    workgroups: [Math.ceil(o.rows / 64)],
    label: o.label,
  })];
}
