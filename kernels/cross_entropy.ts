import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, doneFlag, f32bits, grid, makeDispatch } from "./dispatch.ts";
import { sumRows } from "./sum_rows.ts";
import * as wgsl from "./wgsl.ts";

/** A target id that marks a row without a target (any id >= vocab does). */
export const IGNORE_TARGET = 0xffffffff;

/**
 * Softmax cross-entropy over the vocabulary fused with its gradient, one workgroup per row:
 * loss[r] = logsumexp(logits[r]) - logits[r, t] and dlogits[r] = (softmax(logits[r]) - onehot(t))
 * times `scale` (times scaleBy[0] when given), t = targets[targetsOffset + r]. One streaming
 * pass with an online softmax and one writing pass, for any vocabulary size. A target >= vocab
 * ({@link IGNORE_TARGET}) gives zero loss and a zero gradient row. The gradient overwrites the
 * logits unless `dlogits` is given. With `total`, a second dispatch sums the per-row losses into
 * one float (times total.scale), in a fixed order, for the host to read back asynchronously.
 */
export function crossEntropy(arena: Arena, o: {
  /** [rows, vocab]; overwritten by the gradient unless `dlogits` is given. */
  logits: Tensor;
  /** [targetsOffset + rows] u32 target ids. */
  targets: Tensor;
  /** [rows] receives each row's loss. */
  loss: Tensor;
  rows: number;
  vocab: number;
  targetsOffset?: number;
  /** [rows, vocab] receives the gradient, leaving the logits as they are. */
  dlogits?: Tensor;
  /** Multiplies the gradient (default 1; e.g. 1/targets for a mean loss). */
  scale?: number;
  /** [1] f32 read on the GPU, multiplies the gradient too: a scale that changes per batch. */
  scaleBy?: Tensor;
  /** Sum the losses into total.out[total.offset] (added with total.accumulate). */
  total?: { out: Tensor; offset?: number; scale?: number; accumulate?: boolean };
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const label = o.label ?? "cross_entropy";
  const done = doneFlag(arena.gpu, o.done);
  const targetsOffset = o.targetsOffset ?? 0;
  const n = o.rows * o.vocab;
  const ce = makeDispatch(arena, {
    kernel: "cross_entropy",
    code: wgsl.crossEntropy,
    constants: { IN_PLACE: !o.dlogits, SCALE_BUFFER: !!o.scaleBy },
    params: [o.rows, o.vocab, targetsOffset, f32bits(o.scale ?? 1)],
    bindings: [
      done,
      ["targets", o.targets, "read", targetsOffset + o.rows],
      // Unused bindings still need a buffer: the done flag (read) and a word of the arena.
      o.scaleBy ? ["scaleBy", o.scaleBy, "read", 1] : ["scaleBy", done[1], "read", 0],
      ["logits", o.logits, "write", n],
      o.dlogits
        ? ["dlogits", o.dlogits, "write", n]
        : ["dlogits", arena.tensor(`${label} unused`, [1]), "write", 0],
      ["loss", o.loss, "write", o.rows],
    ],
    workgroups: grid(o.rows),
    label,
  });
  if (!o.total) return [ce];
  return [
    ce,
    ...sumRows(arena, {
      x: o.loss,
      out: o.total.out,
      rows: o.rows,
      cols: 1,
      outOffset: o.total.offset,
      scale: o.total.scale,
      accumulate: o.total.accumulate,
      done: o.done,
      label: `${label}.total`,
    }),
  ];
}
