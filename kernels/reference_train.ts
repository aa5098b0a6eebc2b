/**
 * CPU versions of the training kernels, in f64: causal grouped-query attention forward (with
 * the logsumexp) and backward, the global gradient norm, the learning-rate schedule and
 * PyTorch's AdamW step. The ground truth the GPU kernels are tested against.
 * @module
 */
import type { AdamWConfig, LrSchedule } from "./adamw.ts";

/** Geometry of the training attention references (see `TrainAttentionShape`). */
export interface AttentionRefShape {
  /** Query heads. */
  nHeads: number;
  /** Key/value heads. */
  nKvHeads: number;
  /** Width of one head. */
  headDim: number;
  /** Rows of one sequence; the input holds a whole number of sequences. */
  seqLen: number;
}

/** Reads q, k and v of `qkv` rows [rows, (nHeads + 2 nKvHeads) headDim] by (row, head, dim). */
function heads(qkv: ArrayLike<number>, o: AttentionRefShape) {
  const hd = o.headDim;
  const stride = (o.nHeads + 2 * o.nKvHeads) * hd;
  const group = o.nHeads / o.nKvHeads;
  return {
    stride,
    rows: qkv.length / stride,
    q: (r: number, h: number) => r * stride + h * hd,
    k: (r: number, h: number) => r * stride + (o.nHeads + Math.floor(h / group)) * hd,
    v: (r: number, h: number) => r * stride + (o.nHeads + o.nKvHeads + Math.floor(h / group)) * hd,
  };
}

/**
 * Causal grouped-query attention over stacked sequences: row t of a sequence attends to rows
 * 0..t of it, with scale 1/sqrt(headDim). Returns `out` [rows, nHeads headDim] and `lse`
 * [rows, nHeads], the logsumexp of each row's scaled scores.
 *
 * @example
 * ```ts
 * import { attentionTrainRef } from "./reference_train.ts";
 * const qkv = Float64Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.sin(i));
 * const { out, lse } = attentionTrainRef(qkv, { nHeads: 1, nKvHeads: 1, headDim: 4, seqLen: 2 });
 * console.log(out.length, lse.length); // 8 2
 * ```
 */
export function attentionTrainRef(
  qkv: ArrayLike<number>,
  o: AttentionRefShape,
): { out: Float64Array; lse: Float64Array } {
  const hd = o.headDim, nh = o.nHeads;
  const at = heads(qkv, o);
  const scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(at.rows * nh * hd);
  const lse = new Float64Array(at.rows * nh);
  const p = new Float64Array(o.seqLen);
  for (let r = 0; r < at.rows; r++) {
    const first = r - (r % o.seqLen);
    for (let h = 0; h < nh; h++) {
      let max = -Infinity;
      for (let t = first; t <= r; t++) {
        let s = 0;
        for (let d = 0; d < hd; d++) s += qkv[at.q(r, h) + d] * qkv[at.k(t, h) + d];
        p[t - first] = s * scale;
        max = Math.max(max, s * scale);
      }
      let sum = 0;
      for (let t = first; t <= r; t++) sum += p[t - first] = Math.exp(p[t - first] - max);
      for (let t = first; t <= r; t++) {
        for (let d = 0; d < hd; d++) {
          out[(r * nh + h) * hd + d] += p[t - first] / sum * qkv[at.v(t, h) + d];
        }
      }
      lse[r * nh + h] = max + Math.log(sum);
    }
  }
  return { out, lse };
}

/**
 * Gradient of attention with respect to the fused rows: given `dOut` [rows, nHeads headDim]
 * (the gradient of a loss with respect to {@link attentionTrainRef}'s `out`), returns dqkv in
 * the layout of qkv. Written from the chain rule directly (softmax Jacobian per row), not from
 * the kernels' P (dP - D) form, so the two check each other.
 *
 * @example
 * ```ts
 * import { attentionBackwardRef } from "./reference_train.ts";
 * const o = { nHeads: 2, nKvHeads: 1, headDim: 4, seqLen: 3 };
 * const qkv = Float64Array.from({ length: 3 * 16 }, (_, i) => Math.sin(i));
 * const dOut = Float64Array.from({ length: 3 * 8 }, (_, i) => Math.cos(i));
 * console.log(attentionBackwardRef(qkv, dOut, o).length); // 48
 * ```
 */
export function attentionBackwardRef(
  qkv: ArrayLike<number>,
  dOut: ArrayLike<number>,
  o: AttentionRefShape,
): Float64Array {
  const hd = o.headDim, nh = o.nHeads;
  const at = heads(qkv, o);
  const scale = 1 / Math.sqrt(hd);
  const grad = new Float64Array(qkv.length);
  for (let r = 0; r < at.rows; r++) {
    const first = r - (r % o.seqLen);
    const n = r - first + 1;
    for (let h = 0; h < nh; h++) {
      const s = new Float64Array(n);
      let max = -Infinity;
      for (let t = 0; t < n; t++) {
        for (let d = 0; d < hd; d++) s[t] += qkv[at.q(r, h) + d] * qkv[at.k(first + t, h) + d];
        s[t] *= scale;
        max = Math.max(max, s[t]);
      }
      let sum = 0;
      for (let t = 0; t < n; t++) sum += s[t] = Math.exp(s[t] - max);
      const prob = s.map((e) => e / sum);
      // out = sum_t prob_t v_t: d prob_t = dOut . v_t; d v_t += prob_t dOut.
      const dProb = new Float64Array(n);
      for (let t = 0; t < n; t++) {
        for (let d = 0; d < hd; d++) {
          const g = dOut[(r * nh + h) * hd + d];
          dProb[t] += g * qkv[at.v(first + t, h) + d];
          grad[at.v(first + t, h) + d] += prob[t] * g;
        }
      }
      // Softmax Jacobian: d s_t = prob_t (d prob_t - sum_u prob_u d prob_u).
      let dot = 0;
      for (let t = 0; t < n; t++) dot += prob[t] * dProb[t];
      for (let t = 0; t < n; t++) {
        const dScore = prob[t] * (dProb[t] - dot) * scale;
        for (let d = 0; d < hd; d++) {
          grad[at.q(r, h) + d] += dScore * qkv[at.k(first + t, h) + d];
          grad[at.k(first + t, h) + d] += dScore * qkv[at.q(r, h) + d];
        }
      }
    }
  }
  return grad;
}

/**
 * sqrt of the sum of squares of every element of every tensor: the global gradient norm
 * (torch.nn.utils.clip_grad_norm_ with the 2-norm).
 *
 * @example
 * ```ts
 * import { gradNormRef } from "./reference_train.ts";
 * console.log(gradNormRef([[3], [0, 4]])); // 5
 * ```
 */
export function gradNormRef(grads: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/**
 * Learning rate of step `i` (0-based: the number of steps taken before it): maxLr (i + 1) /
 * warmupSteps during the warmup; then minLr + (maxLr - minLr) (1 + cos(pi f)) / 2 with f =
 * (i - warmupSteps) / (totalSteps - warmupSteps); minLr from totalSteps on.
 *
 * @example
 * ```ts
 * import { lrAt } from "./reference_train.ts";
 * const s = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
 * console.log(lrAt(0, s), lrAt(9, s), lrAt(60, s), lrAt(200, s)); // 1e-4 1e-3 5.5e-4 1e-4
 * ```
 */
export function lrAt(i: number, s: LrSchedule): number {
  if (i < s.warmupSteps) return s.maxLr * (i + 1) / s.warmupSteps;
  if (i >= s.totalSteps) return s.minLr;
  const f = (i - s.warmupSteps) / (s.totalSteps - s.warmupSteps);
  return s.minLr + (s.maxLr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * f));
}

/** One tensor's optimizer state on the CPU: weights and moments, updated in place. */
export interface AdamWParamRef {
  /** Weights. */
  w: Float64Array;
  /** First moment. */
  m: Float64Array;
  /** Second moment. */
  v: Float64Array;
  /** Whether weight decay applies (matrices: yes; norms and biases: no). */
  decay: boolean;
}

/** Step counters of the CPU optimizer, updated in place by {@link adamwRef}. */
export interface AdamWCounters {
  /** Steps applied. */
  step: number;
  /** Steps skipped because the gradient norm was not finite. */
  skipped: number;
}

/**
 * One AdamW step in f64, as torch.nn.utils.clip_grad_norm_ then torch.optim.AdamW (single
 * tensor, decoupled decay) compute it: clip = min(1, maxNorm / (norm + 1e-6)); g *= clip;
 * w *= 1 - lr wd; m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2; w -= lr / (1 - b1^t) m /
 * (sqrt(v) / sqrt(1 - b2^t) + eps), with t the step counted from 1 and lr from the schedule
 * at t - 1. A step whose norm is not finite changes nothing but `counters.skipped`.
 *
 * @example
 * ```ts
 * import { adamwRef } from "./reference_train.ts";
 * const p = { w: new Float64Array([1, 2]), m: new Float64Array(2), v: new Float64Array(2), decay: true };
 * const counters = { step: 0, skipped: 0 };
 * const config = { schedule: { maxLr: 0.1, minLr: 0.01, warmupSteps: 0, totalSteps: 10 } };
 * adamwRef([p], [[0.5, -0.5]], counters, config);
 * console.log(p.w, counters.step); // each weight moves by about lr; 1
 * ```
 */
export function adamwRef(
  params: readonly AdamWParamRef[],
  grads: readonly ArrayLike<number>[],
  counters: AdamWCounters,
  config: AdamWConfig,
): { norm: number; clip: number; lr: number; applied: boolean } {
  const b1 = config.beta1 ?? 0.9, b2 = config.beta2 ?? 0.999;
  const eps = config.eps ?? 1e-8, wd = config.weightDecay ?? 0.01;
  const norm = gradNormRef(grads);
  if (!Number.isFinite(norm)) {
    counters.skipped++;
    return { norm, clip: NaN, lr: NaN, applied: false };
  }
  const maxNorm = config.maxNorm ?? 0;
  const clip = maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
  const lr = lrAt(counters.step, config.schedule);
  const t = ++counters.step;
  const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
  params.forEach((p, k) => {
    const g = grads[k];
    for (let i = 0; i < p.w.length; i++) {
      const gi = g[i] * clip;
      if (p.decay) p.w[i] *= 1 - lr * wd;
      p.m[i] += (1 - b1) * (gi - p.m[i]);
      p.v[i] = b2 * p.v[i] + (1 - b2) * gi * gi;
      p.w[i] -= lr / bc1 * (p.m[i] / (Math.sqrt(p.v[i]) / Math.sqrt(bc2) + eps));
    }
  });
  return { norm, clip, lr, applied: true };
}
