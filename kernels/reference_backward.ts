/**
 * CPU versions of the backward kernels and the cross-entropy loss, in f64: the ground truth the
 * GPU backward kernels are tested against. Each is derived by hand from a forward of
 * `reference.ts`, and the tests check it against central finite differences of that forward.
 * Arrays are row-major, like the GPU buffers.
 * @module
 */
import { ropeFrequencyRef } from "./reference.ts";
import type { RopeScaling } from "./rope_kv.ts";

/**
 * Backward of `rmsnormRef` (y = x s g, s = 1/sqrt(mean(x^2) + eps) per row): the input gradient
 * dx = s g dy - x s^3/dim sum(g dy x) and the weight gradient dg = sum over rows of dy x s.
 */
export function rmsnormBackwardRef(
  x: ArrayLike<number>,
  g: ArrayLike<number>,
  dy: ArrayLike<number>,
  o: { dim: number; eps: number },
): { dx: Float64Array; dg: Float64Array } {
  const { dim } = o;
  const dx = new Float64Array(x.length);
  const dg = new Float64Array(dim);
  for (let r = 0; r < x.length / dim; r++) {
    const at = r * dim;
    let ss = 0, dot = 0;
    for (let e = 0; e < dim; e++) {
      ss += x[at + e] ** 2;
      dot += g[e] * dy[at + e] * x[at + e];
    }
    const s = 1 / Math.sqrt(ss / dim + o.eps);
    for (let e = 0; e < dim; e++) {
      dx[at + e] = s * g[e] * dy[at + e] - x[at + e] * s ** 3 / dim * dot;
      dg[e] += dy[at + e] * x[at + e] * s;
    }
  }
  return { dx, dg };
}

/**
 * Backward of `qkNormRef`: `dqkv` (the gradient of its output) with its query and key heads
 * replaced by the gradient of the heads before the norm (values pass through), and the weight
 * gradients, each summed over rows and its heads.
 */
export function qkNormBackwardRef(
  qkv: ArrayLike<number>,
  dqkv: ArrayLike<number>,
  o: {
    qWeight: ArrayLike<number>;
    kWeight: ArrayLike<number>;
    nHeads: number;
    nKvHeads: number;
    headDim: number;
    eps: number;
  },
): { dqkv: Float64Array; dgq: Float64Array; dgk: Float64Array } {
  const hd = o.headDim;
  const heads = o.nHeads + 2 * o.nKvHeads;
  const dx = Float64Array.from(dqkv);
  const dgq = new Float64Array(hd);
  const dgk = new Float64Array(hd);
  for (let r = 0; r < qkv.length / (heads * hd); r++) {
    for (let h = 0; h < o.nHeads + o.nKvHeads; h++) {
      const at = (r * heads + h) * hd;
      const q = h < o.nHeads;
      const slice = (a: ArrayLike<number>) => Array.from({ length: hd }, (_, e) => a[at + e]);
      const b = rmsnormBackwardRef(slice(qkv), q ? o.qWeight : o.kWeight, slice(dqkv), {
        dim: hd,
        eps: o.eps,
      });
      dx.set(b.dx, at);
      const dg = q ? dgq : dgk;
      for (let e = 0; e < hd; e++) dg[e] += b.dg[e];
    }
  }
  return { dqkv: dx, dgq, dgk };
}

/**
 * Backward of `siluResidualRef`'s silu: dx[r, offset + i] = dy[r, i] silu'(x[r, offset + i]),
 * other columns of dx 0 (the residual's gradient is dy itself).
 */
export function siluBackwardRef(
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  n: number,
  stride = n,
  offset = 0,
): Float64Array {
  const dx = new Float64Array(x.length);
  for (let r = 0; r < dy.length / n; r++) {
    for (let i = 0; i < n; i++) {
      const v = x[r * stride + offset + i];
      const sig = 1 / (1 + Math.exp(-v));
      dx[r * stride + offset + i] = dy[r * n + i] * sig * (1 + v * (1 - sig));
    }
  }
  return dx;
}

/**
 * Backward of `swigluRef` (out = silu(g) u): dg = dout u silu'(g) with
 * silu'(g) = sigma(g) (1 + g (1 - sigma(g))), du = dout silu(g).
 */
export function swigluBackwardRef(
  gu: ArrayLike<number>,
  dout: ArrayLike<number>,
  n: number,
): Float64Array {
  const dgu = new Float64Array(gu.length);
  for (let r = 0; r < gu.length / (2 * n); r++) {
    for (let i = 0; i < n; i++) {
      const g = gu[r * 2 * n + i], u = gu[r * 2 * n + n + i], d = dout[r * n + i];
      const sig = 1 / (1 + Math.exp(-g));
      dgu[r * 2 * n + i] = d * u * sig * (1 + g * (1 - sig));
      dgu[r * 2 * n + n + i] = d * g * sig;
    }
  }
  return dgu;
}

/**
 * Backward of `ropeRef` on fused qkv gradient rows [rows, (nHeads + 2 nKvHeads) hd]: each query
 * and key head is rotated by minus its row's angle (the transpose of the rotation); values are
 * copied. Rows at positions >= capacity (when given) are copied, as the forward skips them.
 */
export function ropeBackwardRef(
  dqkv: ArrayLike<number>,
  positions: readonly number[],
  o: {
    nHeads: number;
    nKvHeads: number;
    headDim: number;
    theta: number;
    scaling?: RopeScaling | null;
    capacity?: number;
  },
): Float64Array {
  const hd = o.headDim, half = hd / 2;
  const heads = o.nHeads + 2 * o.nKvHeads;
  const out = Float64Array.from(dqkv);
  for (let r = 0; r < positions.length; r++) {
    if (positions[r] >= (o.capacity ?? Infinity)) continue;
    for (let h = 0; h < o.nHeads + o.nKvHeads; h++) {
      const at = (r * heads + h) * hd;
      for (let i = 0; i < half; i++) {
        const angle = positions[r] * ropeFrequencyRef(i, hd, o);
        const c = Math.cos(angle), s = Math.sin(angle);
        const da = dqkv[at + i], db = dqkv[at + i + half];
        out[at + i] = da * c + db * s;
        out[at + i + half] = db * c - da * s;
      }
    }
  }
  return out;
}

/**
 * Backward of `embedRef`: the table gradient [vocab, dim], dE[v] = sum of dh[r] over the rows
 * with ids[r] = v; ids outside [0, vocab) contribute nothing.
 */
export function embedBackwardRef(
  ids: ArrayLike<number>,
  dh: ArrayLike<number>,
  o: { vocab: number; dim: number },
): Float64Array {
  const dE = new Float64Array(o.vocab * o.dim);
  for (let r = 0; r < ids.length; r++) {
    const id = ids[r];
    if (id < 0 || id >= o.vocab) continue;
    for (let e = 0; e < o.dim; e++) dE[id * o.dim + e] += dh[r * o.dim + e];
  }
  return dE;
}

/**
 * The cross-entropy forward: per-row loss logsumexp(logits[r]) - logits[r, targets[r]], zero
 * for a target outside [0, vocab) (no target).
 */
export function crossEntropyRef(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  vocab: number,
): Float64Array {
  const loss = new Float64Array(targets.length);
  for (let r = 0; r < targets.length; r++) {
    const t = targets[r];
    if (t < 0 || t >= vocab) continue;
    let m = -Infinity;
    for (let j = 0; j < vocab; j++) m = Math.max(m, logits[r * vocab + j]);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(logits[r * vocab + j] - m);
    loss[r] = m + Math.log(s) - logits[r * vocab + t];
  }
  return loss;
}

/**
 * Gradient of scale * sum of `crossEntropyRef`'s losses: (softmax(logits[r]) - onehot(t)) * scale,
 * zero rows for rows without a target.
 */
export function crossEntropyBackwardRef(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  o: { vocab: number; scale: number },
): Float64Array {
  const { vocab } = o;
  const d = new Float64Array(targets.length * vocab);
  for (let r = 0; r < targets.length; r++) {
    const t = targets[r];
    if (t < 0 || t >= vocab) continue;
    const at = r * vocab;
    let m = -Infinity;
    for (let j = 0; j < vocab; j++) m = Math.max(m, logits[at + j]);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(logits[at + j] - m);
    for (let j = 0; j < vocab; j++) {
      d[at + j] = (Math.exp(logits[at + j] - m) / s - (j === t ? 1 : 0)) * o.scale;
    }
  }
  return d;
}
