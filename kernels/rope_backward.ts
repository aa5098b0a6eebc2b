import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, grid, makeDispatch } from "./dispatch.ts";
import type { AttentionShape } from "./rope_kv.ts";
import * as wgsl from "./wgsl.ts";

/**
 * Backward of the RoPE rotation of `ropeKv()`: rotates the query and key heads of the gradient
 * rows `dqkv` back (by minus each row's angle, with the same `ropeTable()`), in place. Value
 * heads and rows at positions >= capacity are left alone, as the forward leaves them.
 */
export function ropeBackward(
  arena: Arena,
  o: AttentionShape & {
    /** [rows] u32 position of each row. */
    positions: Tensor;
    /** [capacity, headDim/2] (cos, sin) pairs, the forward's table. */
    rope: Tensor;
    /** [rows, (nHeads + 2 nKvHeads) headDim] gradient, rotated in place. */
    dqkv: Tensor;
    rows: number;
    done?: GPUBuffer;
    label?: string;
  },
): Dispatch[] {
  const pairs = (o.nHeads + o.nKvHeads) * o.headDim / 2;
  return [makeDispatch(arena, {
    kernel: "rope_backward",
    code: wgsl.ropeBackward,
    params: [o.rows, o.nHeads, o.nKvHeads, o.headDim, o.capacity],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["positions", o.positions, "read", o.rows],
      ["rope", o.rope, "read", o.capacity * o.headDim],
      ["dqkv", o.dqkv, "write", o.rows * (o.nHeads + 2 * o.nKvHeads) * o.headDim],
    ],
    workgroups: [Math.ceil(pairs / 256), ...grid(o.rows)],
    label: o.label ?? "rope_backward",
  })];
}
