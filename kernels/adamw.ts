/**
 * The optimizer step on the GPU: global-norm clipping, a warmup + cosine learning-rate schedule
 * and AdamW (PyTorch's semantics), with the step counter, learning rate and clip factor in a GPU
 * buffer, so that a training loop only submits. A step whose gradient norm is NaN or infinite
 * is skipped and counted in the same buffer, which the host reads back asynchronously.
 * @module
 */
import { type Arena, numel, type Tensor } from "../gpu/arena.ts";
import { ConfigError, ShapeError } from "../gpu/errors.ts";
import { type Dispatch, doneFlag, f32bits, grid, makeDispatch } from "./dispatch.ts";
import { gradNorm } from "./grad_norm.ts";
import * as wgsl from "./wgsl.ts";

/** Linear warmup then cosine decay of the learning rate (see `lrAt` in reference_train.ts). */
export interface LrSchedule {
  /** Peak learning rate, reached at the last warmup step. */
  maxLr: number;
  /** Learning rate at and after `totalSteps`. */
  minLr: number;
  /** Steps of linear warmup: step i < warmupSteps uses maxLr (i + 1) / warmupSteps. */
  warmupSteps: number;
  /** Step at which the cosine reaches minLr (>= warmupSteps); later steps use minLr. */
  totalSteps: number;
}

/** Hyperparameters of AdamW with global-norm clipping and a learning-rate schedule. */
export interface AdamWConfig {
  /** The learning-rate schedule. */
  schedule: LrSchedule;
  /** Decay of the first moment; default 0.9 (PyTorch's). */
  beta1?: number;
  /** Decay of the second moment; default 0.999 (PyTorch's). */
  beta2?: number;
  /** Added to sqrt(vhat); default 1e-8. */
  eps?: number;
  /** Decoupled weight decay of the tensors flagged `decay`; default 0.01 (PyTorch's). */
  weightDecay?: number;
  /** Clip the global gradient norm to this; absent or 0: no clipping. */
  maxNorm?: number;
}

/** One trained tensor: f32 master weights, its gradient and its two moments, all [n]. */
export interface AdamWParam {
  /** f32 master weights, updated in place. */
  weight: Tensor;
  /** The gradient of this step (read only). */
  grad: Tensor;
  /** First moment (zeros before the first step). */
  m: Tensor;
  /** Second moment (zeros before the first step). */
  v: Tensor;
  /** Whether weight decay applies: matrices yes, norm weights and biases no. */
  decay: boolean;
}

/**
 * Words of the optimizer state buffer (u32; the f32 ones as bits). All zero is the state before
 * the first step; to resume, write the step count into word STEP.
 */
export const OPT = {
  /** Steps applied so far (skipped steps excluded): t - 1 of the next step. */
  STEP: 0,
  /** f32: learning rate of the last applied step. */
  LR: 1,
  /** f32: global gradient norm of the last step, before clipping (NaN/inf if it was skipped). */
  NORM: 2,
  /** f32: factor the last applied step multiplied the gradients by. */
  CLIP: 3,
  /** f32: 1 - beta1^t of the last applied step. */
  BIAS1: 4,
  /** f32: sqrt(1 - beta2^t) of the last applied step. */
  BIAS2_SQRT: 5,
  /** 1 if the last step was applied, 0 if it was skipped. */
  APPLIED: 6,
  /** Steps skipped so far because the gradient norm was NaN or infinite. */
  SKIPPED: 7,
  /** The STEP count when the first skip happened (meaningful once SKIPPED > 0). */
  FIRST_SKIPPED: 8,
  /** Length of the buffer in words. */
  WORDS: 16,
} as const;

/** The optimizer state as the host sees it, decoded from the state buffer. */
export interface OptimizerStatus {
  /** Steps applied so far. */
  step: number;
  /** Learning rate of the last applied step. */
  lr: number;
  /** Gradient norm of the last step (NaN or infinite if it was skipped). */
  gradNorm: number;
  /** Clip factor of the last applied step. */
  clip: number;
  /** Whether the last step was applied. */
  applied: boolean;
  /** Steps skipped because of a NaN or infinite gradient norm. */
  skipped: number;
  /** Step count at the first skip, or null if none. */
  firstSkipped: number | null;
}

/**
 * Decodes the words of an optimizer state buffer (a read-back of at least 9 words).
 *
 * @example
 * ```ts
 * import { OPT, optimizerStatus } from "./adamw.ts";
 * const words = new Uint32Array(OPT.WORDS);
 * words[OPT.STEP] = 3;
 * console.log(optimizerStatus(words).step); // 3
 * ```
 */
export function optimizerStatus(words: Uint32Array): OptimizerStatus {
  const f = new Float32Array(words.buffer, words.byteOffset, words.length);
  return {
    step: words[OPT.STEP],
    lr: f[OPT.LR],
    gradNorm: f[OPT.NORM],
    clip: f[OPT.CLIP],
    applied: words[OPT.APPLIED] === 1,
    skipped: words[OPT.SKIPPED],
    firstSkipped: words[OPT.SKIPPED] > 0 ? words[OPT.FIRST_SKIPPED] : null,
  };
}

/**
 * Reads the optimizer state back and decodes it. Asynchronous: await it beside the training
 * loop's submits (every few steps), never before each step.
 *
 * @example
 * ```ts
 * import { createGpu } from "../gpu/device.ts";
 * import { OPT, readOptimizerStatus } from "./adamw.ts";
 * const gpu = await createGpu();
 * const a = gpu.arena("optimizer");
 * const state = a.tensor("opt state", [OPT.WORDS], "u32");
 * const status = await readOptimizerStatus(a, state);
 * console.log(status.step, status.skipped); // 0 0
 * gpu.dispose();
 * ```
 */
export async function readOptimizerStatus(arena: Arena, state: Tensor): Promise<OptimizerStatus> {
  return optimizerStatus(new Uint32Array(await arena.gpu.read(state.buffer, OPT.WORDS * 4)));
}

function checkConfig(label: string, c: AdamWConfig): Required<AdamWConfig> {
  const full = {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    maxNorm: 0,
    ...c,
  };
  const s = c.schedule;
  const bad = (what: string) => {
    throw new ConfigError(`${label}: ${what}`);
  };
  for (const k of ["beta1", "beta2"] as const) {
    if (!(full[k] >= 0 && full[k] < 1)) bad(`${k} must be in [0, 1), got ${full[k]}`);
  }
  if (!(full.eps > 0)) bad(`eps must be > 0, got ${full.eps}`);
  if (!(full.weightDecay >= 0)) bad(`weightDecay must be >= 0, got ${full.weightDecay}`);
  if (!(full.maxNorm >= 0)) bad(`maxNorm must be >= 0 (0: no clipping), got ${full.maxNorm}`);
  if (!(s.maxLr >= 0 && s.minLr >= 0)) bad(`maxLr and minLr must be >= 0`);
  if (!Number.isInteger(s.warmupSteps) || !Number.isInteger(s.totalSteps)) {
    bad(`warmupSteps and totalSteps must be integers`);
  }
  if (!(s.warmupSteps >= 0 && s.totalSteps >= s.warmupSteps && s.totalSteps < 2 ** 24)) {
    bad(`need 0 <= warmupSteps <= totalSteps < 2^24, got ${s.warmupSteps} and ${s.totalSteps}`);
  }
  return full;
}

/**
 * One optimizer step over `params`, as launches to submit after the backward: the global
 * gradient norm ({@link gradNorm}, into `norm`); a one-thread launch that reads the step count
 * from `state`, computes the clip factor min(1, maxNorm / (norm + 1e-6)), the learning rate of
 * the schedule and the bias corrections, and counts the step; then one AdamW update per tensor
 * (torch.optim.AdamW: w *= 1 - lr wd before the Adam update; decay only where `decay`). If the
 * norm is NaN or infinite, nothing changes but OPT.SKIPPED (and OPT.FIRST_SKIPPED, OPT.APPLIED):
 * the host sees it through {@link readOptimizerStatus} and can stop with the last good weights.
 *
 * @example
 * ```ts
 * import { createGpu } from "../gpu/device.ts";
 * import { run } from "./dispatch.ts";
 * import { adamw, OPT } from "./adamw.ts";
 * import { gradNormPartials } from "./grad_norm.ts";
 * const gpu = await createGpu();
 * const a = gpu.arena("optimizer");
 * const t = (name: string) => a.tensor(name, [64, 32]);
 * const params = [{ weight: t("w"), grad: t("g"), m: t("m"), v: t("v"), decay: true }];
 * const step = adamw(a, {
 *   params,
 *   state: a.tensor("opt state", [OPT.WORDS], "u32"),
 *   partial: a.tensor("partial", [gradNormPartials(params.map((p) => p.grad))]),
 *   norm: a.tensor("norm", [1]),
 *   config: {
 *     schedule: { maxLr: 3e-4, minLr: 3e-5, warmupSteps: 100, totalSteps: 5000 },
 *     maxNorm: 1,
 *     weightDecay: 0.1,
 *   },
 * });
 * run(gpu, step, "optimizer step"); // replay `step` after each backward
 * gpu.dispose();
 * ```
 */
export function adamw(arena: Arena, o: {
  /** The trained tensors. */
  params: readonly AdamWParam[];
  /** [OPT.WORDS] u32 optimizer state (zeros before the first step). */
  state: Tensor;
  /** Scratch of the norm: [gradNormPartials(grads)]. */
  partial: Tensor;
  /** [1] the global gradient norm of the step. */
  norm: Tensor;
  /** Hyperparameters. */
  config: AdamWConfig;
  done?: GPUBuffer;
  label?: string;
}): Dispatch[] {
  const label = o.label ?? "adamw";
  const c = checkConfig(label, o.config);
  const s = c.schedule;
  const done = doneFlag(arena.gpu, o.done);
  const out = gradNorm(arena, {
    grads: o.params.map((p) => p.grad),
    partial: o.partial,
    norm: o.norm,
    done: o.done,
    label: `${label}.norm`,
  });
  out.push(makeDispatch(arena, {
    kernel: "adamw_schedule",
    code: wgsl.adamwSchedule,
    params: [
      f32bits(s.maxLr),
      f32bits(s.minLr),
      s.warmupSteps,
      s.totalSteps,
      f32bits(c.maxNorm),
      // ln(beta) in f64: beta^t is computed as exp(t ln beta) without WGSL's pow and log.
      f32bits(Math.log(c.beta1)),
      f32bits(Math.log(c.beta2)),
    ],
    bindings: [done, ["norm", o.norm, "read", 1], ["state", o.state, "write", OPT.WORDS]],
    workgroups: [1],
    label: `${label}.schedule`,
  }));
  o.params.forEach((p, i) => {
    const n = numel(p.weight);
    const name = p.weight.label || `params[${i}]`;
    for (const t of [p.grad, p.m, p.v]) {
      if (numel(t) !== n) {
        throw new ShapeError(`${label}: ${name} has ${n} weights but ${t.label} holds ${numel(t)}`);
      }
    }
    out.push(makeDispatch(arena, {
      kernel: "adamw",
      code: wgsl.adamw,
      params: [
        n,
        f32bits(1 - c.beta1),
        f32bits(c.beta2),
        f32bits(1 - c.beta2),
        f32bits(c.eps),
        f32bits(p.decay ? c.weightDecay : 0),
      ],
      bindings: [
        done,
        ["state", o.state, "read", OPT.WORDS],
        ["weight", p.weight, "write", n],
        ["grad", p.grad, "read", n],
        ["m", p.m, "write", n],
        ["v", p.v, "write", n],
      ],
      workgroups: grid(Math.ceil(n / 256)),
      label: `${label}.${name}`,
    }));
  });
  return out;
}
