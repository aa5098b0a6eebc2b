import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, grid, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** u32 words of the plan of a batch of `rows` ids (see {@link embedBackwardPlan}). */
export function embedBackwardPlanWords(rows: number): number {
  return 3 * rows + 2;
}

/**
 * The host side of the embedding backward: the batch's ids grouped by value, so that one
 * workgroup owns each distinct id (WGSL has no float atomics). The count of distinct ids, the
 * distinct ids ascending, the start of each id's group, then the row indices ordered by id and,
 * within an id, by row (a stable sort), padded to {@link embedBackwardPlanWords}(ids.length)
 * words so that a program built once takes every batch of that size. Ids outside
 * [0, vocab) (NO_TOKEN) are left out: the forward gives them zero rows, so they have no gradient.
 * The ids are known when the batch is uploaded, so this costs no host sync; write the result
 * next to the ids.
 */
export function embedBackwardPlan(ids: ArrayLike<number>, vocab: number): Uint32Array {
  const rows = ids.length;
  const order = Array.from({ length: rows }, (_, r) => r)
    .filter((r) => ids[r] >= 0 && ids[r] < vocab)
    .sort((a, b) => ids[a] - ids[b] || a - b);
  const plan = new Uint32Array(embedBackwardPlanWords(rows));
  let n = 0;
  for (let k = 0; k < order.length; k++) {
    if (k === 0 || ids[order[k]] !== ids[order[k - 1]]) {
      plan[1 + n] = ids[order[k]];
      plan[1 + rows + n] = k;
      n++;
    }
  }
  plan[0] = n;
  plan[1 + rows + n] = order.length;
  plan.set(order, 2 + 2 * rows);
  return plan;
}

/**
 * Embedding backward: dE[v, :] += sum of dh[r, :] over the rows with ids[r] = v, always adding
 * (a tied unembedding's weight gradient and this share dE; clear it once per step). One
 * workgroup per distinct id from the {@link embedBackwardPlan}, summing its rows in ascending
 * order and writing its row of dE once: no atomics, and the same bits every run. The grid is
 * one workgroup per row, because the number of distinct ids is only known on the GPU.
 */
export function embedBackward(arena: Arena, o: {
  /** [embedBackwardPlanWords(rows)] u32, from embedBackwardPlan(ids, vocab). */
  plan: Tensor;
  /** [rows, dim] gradient of the embedding's output. */
  dh: Tensor;
  /** [vocab, dim] gradient of the table, added into. */
  dE: Tensor;
  rows: number;
  dim: number;
  vocab: number;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  return [makeDispatch(arena, {
    kernel: "embed_backward",
    code: wgsl.embedBackward,
    params: [o.rows, o.dim, o.vocab],
    bindings: [
      doneFlag(arena.gpu, o.done),
      ["plan", o.plan, "read", embedBackwardPlanWords(o.rows)],
      ["dh", o.dh, "read", o.rows * o.dim],
      ["dE", o.dE, "write", o.vocab * o.dim],
    ],
    workgroups: grid(o.rows),
    label: o.label ?? "embed_backward",
  })];
}
