/**
 * The global gradient norm of a list of tensors, on the GPU: the clipping input of the
 * optimizer step, computed without a host sync.
 * @module
 */
import { type Arena, numel, type Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import { type Dispatch, doneFlag, makeDispatch } from "./dispatch.ts";
import * as wgsl from "./wgsl.ts";

/** Elements a workgroup of the sum-of-squares pass covers, at least (32 per thread). */
const CHUNK = 8192;
/** Most workgroups per tensor: beyond this, workgroups take longer chunks instead. */
const MAX_WORKGROUPS = 1024;

/** Workgroups (and partial sums) of one tensor of `n` elements. */
function workgroupsOf(n: number): number {
  return Math.max(1, Math.min(MAX_WORKGROUPS, Math.ceil(n / CHUNK)));
}

/**
 * Length of the `partial` buffer {@link gradNorm} needs for these tensors: one float per
 * workgroup of the sum-of-squares pass (about one per 8192 elements of each tensor, at most
 * 1024 per tensor).
 *
 * @example
 * ```ts
 * import { createGpu } from "../gpu/device.ts";
 * import { gradNormPartials } from "./grad_norm.ts";
 * const gpu = await createGpu();
 * const a = gpu.arena("grads");
 * const grads = [a.tensor("w", [1000, 100]), a.tensor("b", [100])];
 * console.log(gradNormPartials(grads)); // 13 + 1
 * gpu.dispose();
 * ```
 */
export function gradNormPartials(grads: readonly Tensor[]): number {
  return grads.reduce((s, g) => s + workgroupsOf(numel(g)), 0);
}

/**
 * norm[0] = sqrt(sum over all tensors and elements of g^2) (torch.nn.utils.clip_grad_norm_'s
 * total 2-norm). One launch per tensor writes its sums of squares into `partial` (length
 * {@link gradNormPartials}), then one workgroup adds them up. Every sum runs in an order fixed
 * by the tensors' sizes, so the norm has the same bits on every run. A NaN or infinite gradient
 * gives a NaN or infinite norm.
 *
 * @example
 * ```ts
 * import { createGpu } from "../gpu/device.ts";
 * import { run } from "./dispatch.ts";
 * import { gradNorm, gradNormPartials } from "./grad_norm.ts";
 * const gpu = await createGpu();
 * const a = gpu.arena("grads");
 * const grads = [a.tensor("w", [64, 64]), a.tensor("b", [64])];
 * const partial = a.tensor("partial", [gradNormPartials(grads)]);
 * const norm = a.tensor("norm", [1]);
 * run(gpu, gradNorm(a, { grads, partial, norm }), "grad norm");
 * gpu.dispose();
 * ```
 */
export function gradNorm(arena: Arena, o: {
  /** The gradients, of any sizes. */
  grads: readonly Tensor[];
  /** Scratch: [gradNormPartials(grads)] sums of squares. */
  partial: Tensor;
  /** [1] the norm. */
  norm: Tensor;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const label = o.label ?? "grad_norm";
  if (o.grads.length === 0) throw new ShapeError(`${label}: no gradient tensors`);
  const count = gradNormPartials(o.grads);
  const done = doneFlag(arena.gpu, o.done);
  let offset = 0;
  const out = o.grads.map((g, i) => {
    const n = numel(g);
    const wgs = workgroupsOf(n);
    const d = makeDispatch(arena, {
      kernel: "grad_norm",
      code: wgsl.gradNorm,
      params: [n, Math.ceil(n / wgs), offset],
      bindings: [done, [`grads[${i}]`, g, "read", n], ["partial", o.partial, "write", count]],
      workgroups: [wgs],
      label: `${label}.${g.label || i}`,
    });
    offset += wgs;
    return d;
  });
  out.push(makeDispatch(arena, {
    kernel: "grad_norm_reduce",
    code: wgsl.gradNormReduce,
    params: [count],
    bindings: [done, ["partial", o.partial, "read", count], ["norm", o.norm, "write", 1]],
    workgroups: [1],
    label: `${label}.reduce`,
  }));
  return out;
}
