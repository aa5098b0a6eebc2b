/**
 * CPU versions of every kernel, accumulating in f64: the ground truth the GPU kernels and the
 * whole-model forward are tested against. Arrays are row-major, like the GPU buffers.
 * @module
 */
import { ShapeError } from "../gpu/errors.ts";
import type { RopeScaling } from "./rope_kv.ts";

/** out[r] = table[ids[r]]; ids outside [0, vocab) give zero rows. */
export function embedRef(table: Float32Array, dim: number, ids: ArrayLike<number>): Float64Array {
  const vocab = table.length / dim;
  const out = new Float64Array(ids.length * dim);
  for (let r = 0; r < ids.length; r++) {
    const id = ids[r];
    if (id >= 0 && id < vocab) {
      for (let e = 0; e < dim; e++) out[r * dim + e] = table[id * dim + e];
    }
  }
  return out;
}

/** RMSNorm of each row of x. */
export function rmsnormRef(
  x: ArrayLike<number>,
  g: ArrayLike<number>,
  dim: number,
  eps: number,
): Float64Array {
  const rows = x.length / dim;
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let e = 0; e < dim; e++) s += x[r * dim + e] ** 2;
    const scale = 1 / Math.sqrt(s / dim + eps);
    for (let e = 0; e < dim; e++) out[r * dim + e] = x[r * dim + e] * scale * g[e];
  }
  return out;
}

/** y[r, n] = x[r] . W[n] for W of shape [N, K]. */
export function matmulRef(x: ArrayLike<number>, w: ArrayLike<number>, k: number): Float64Array {
  const rows = x.length / k;
  const n = w.length / k;
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += x[r * k + i] * w[j * k + i];
      y[r * n + j] = s;
    }
  }
  return y;
}

/** silu(v) = v * sigmoid(v). */
export function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** out[r, i] = res[r, i] + silu(x[r, offset + i]), x's rows `stride` apart (Medusa's ResBlock). */
export function siluResidualRef(
  x: ArrayLike<number>,
  res: ArrayLike<number>,
  n: number,
  stride = n,
  offset = 0,
): Float64Array {
  const out = new Float64Array(res.length);
  for (let r = 0; r < res.length / n; r++) {
    for (let i = 0; i < n; i++) out[r * n + i] = res[r * n + i] + silu(x[r * stride + offset + i]);
  }
  return out;
}

/** out[r, i] = silu(gu[r, i]) * gu[r, n + i]. */
export function swigluRef(gu: ArrayLike<number>, n: number): Float64Array {
  const rows = gu.length / (2 * n);
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) out[r * n + i] = silu(gu[r * 2 * n + i]) * gu[r * 2 * n + n + i];
  }
  return out;
}

/** out = a + b. */
export function addRef(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** Index of the largest value of each row; ties go to the lowest index. */
export function argmaxRef(logits: ArrayLike<number>, n: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / n; r++) {
    let best = 0;
    for (let j = 1; j < n; j++) if (logits[r * n + j] > logits[r * n + best]) best = j;
    out.push(best);
  }
  return out;
}

/**
 * RoPE frequency i of a head of width `hd`, after HF `rope_scaling` (transformers'
 * `_compute_linear_scaling_rope_parameters` and `_compute_llama3_parameters`), written
 * apart from the GPU's table so the two check each other.
 */
export function ropeFrequencyRef(
  i: number,
  hd: number,
  o: { theta: number; scaling?: RopeScaling | null },
): number {
  const invFreq = 1 / Math.pow(o.theta, (2 * i) / hd);
  const s = o.scaling;
  if (!s) return invFreq;
  if (s.type === "linear") return invFreq / s.factor;
  const wavelen = (2 * Math.PI) / invFreq;
  const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor;
  const scaled = wavelen > lowFreqWavelen ? invFreq / s.factor : invFreq;
  const medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
  if (!medium) return scaled;
  const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) /
    (s.highFreqFactor - s.lowFreqFactor);
  return (1 - smooth) * scaled / s.factor + smooth * scaled;
}

/** RoPE (rotate_half convention) of one head vector at `pos`, in place. */
export function ropeRef(
  v: Float64Array | number[],
  pos: number,
  o: { theta: number; scaling?: RopeScaling | null },
): void {
  const hd = v.length;
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos * ropeFrequencyRef(i, hd, o);
    const c = Math.cos(angle), s = Math.sin(angle);
    const a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

/**
 * Per-head RMSNorm of the query and key parts of fused qkv rows [rows, (nHeads + 2 nKvHeads)
 * hd]: query heads use `qWeight`, key heads `kWeight` (each [hd]); values are copied.
 */
export function qkNormRef(
  qkv: ArrayLike<number>,
  o: {
    qWeight: ArrayLike<number>;
    kWeight: ArrayLike<number>;
    nHeads: number;
    nKvHeads: number;
    headDim: number;
    eps: number;
  },
): Float64Array {
  const hd = o.headDim;
  const heads = o.nHeads + 2 * o.nKvHeads;
  const out = Float64Array.from(qkv);
  for (let r = 0; r < qkv.length / (heads * hd); r++) {
    for (let h = 0; h < o.nHeads + o.nKvHeads; h++) {
      const at = (r * heads + h) * hd;
      const g = h < o.nHeads ? o.qWeight : o.kWeight;
      out.set(rmsnormRef(out.subarray(at, at + hd), g, hd, o.eps), at);
    }
  }
  return out;
}

/**
 * Causal grouped-query attention of query rows at positions `positions[r]` (default `pos0 + r`)
 * over caches holding positions 0.. : q [rows, nHeads, hd], caches [positions, nKvHeads, hd] ->
 * [rows, nHeads * hd]. Row r attends to positions 0..positions[r].
 */
export function attentionRef(
  q: ArrayLike<number>,
  kCache: ArrayLike<number>,
  vCache: ArrayLike<number>,
  o: {
    nHeads: number;
    nKvHeads: number;
    headDim: number;
    pos0?: number;
    positions?: readonly number[];
  },
): Float64Array {
  const { nHeads, nKvHeads, headDim: hd } = o;
  const rows = q.length / (nHeads * hd);
  const out = new Float64Array(rows * nHeads * hd);
  const group = nHeads / nKvHeads;
  for (let r = 0; r < rows; r++) {
    const len = (o.positions ? o.positions[r] : (o.pos0 ?? 0) + r) + 1;
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / group);
      const scores = new Float64Array(len);
      let max = -Infinity;
      for (let t = 0; t < len; t++) {
        let s = 0;
        for (let d = 0; d < hd; d++) {
          s += q[(r * nHeads + h) * hd + d] * kCache[(t * nKvHeads + kvh) * hd + d];
        }
        scores[t] = s / Math.sqrt(hd);
        max = Math.max(max, scores[t]);
      }
      let sum = 0;
      for (let t = 0; t < len; t++) sum += scores[t] = Math.exp(scores[t] - max);
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        for (let t = 0; t < len; t++) acc += scores[t] * vCache[(t * nKvHeads + kvh) * hd + d];
        out[(r * nHeads + h) * hd + d] = acc / sum;
      }
    }
  }
  return out;
}

/** out[outRow] = x[index]: rows of `dim` values. */
export function gatherRowsRef(x: ArrayLike<number>, dim: number, index: number): Float64Array {
  return Float64Array.from({ length: dim }, (_, e) => x[index * dim + e]);
}

/** ||a - b|| / ||b||: the error measure of every GPU-versus-reference test. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new ShapeError(`length ${a.length} != ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

/**
 * Quantizes [rows, cols] values by quantize.wgsl's rules (blocks of 32 along a row; the scale d
 * rounded to f16 first; q8: d = absmax / 127, q = round-half-even(x / d) in [-127, 127]; q4:
 * d = m / -8 for m the largest-magnitude value, q = clamp(floor(x / d + 8.5), 0, 15) - 8), in
 * the checkpoint form: int8 values (q8) or two per byte, low nibble first, stored q + 8 (q4),
 * and f16 scales [rows, cols / 32].
 */
export function quantizeRef(
  values: ArrayLike<number>,
  cols: number,
  dtype: "q8" | "q4",
): { bytes: Uint8Array; scales: Uint8Array; codes: Int8Array; near: Uint8Array } {
  if (cols % 32 !== 0) {
    throw new ShapeError(`quantizeRef: ${cols} columns is not whole blocks of 32`);
  }
  const n = values.length;
  const codes = new Int8Array(n);
  // 1 where x / d lies within 1e-4 of a rounding boundary: the GPU's division may round it the
  // other way (WGSL allows 2.5 ULP), so tests accept either code there.
  const near = new Uint8Array(n);
  const scales = new Float16Array(n / 32);
  const f = Math.fround;
  for (let b = 0; b < n / 32; b++) {
    let amax = 0, m = 0;
    for (let e = 0; e < 32; e++) {
      const v = values[b * 32 + e];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        m = v;
      }
    }
    scales[b] = dtype === "q8" ? f(amax / 127) : f(m / -8);
    const d = scales[b];
    const inv = d === 0 ? 0 : f(1 / d);
    for (let e = 0; e < 32; e++) {
      const t = f(values[b * 32 + e] * inv);
      let q: number;
      if (dtype === "q8") {
        const r = Math.round(t);
        q = Math.abs(t - Math.trunc(t)) === 0.5 ? 2 * Math.round(t / 2) : r; // half to even
        q = Math.min(127, Math.max(-127, q));
        near[b * 32 + e] = Math.abs(Math.abs(t - Math.trunc(t)) - 0.5) < 1e-4 ? 1 : 0;
      } else {
        const u = f(t + 8.5);
        q = Math.min(15, Math.max(0, Math.floor(u))) - 8;
        near[b * 32 + e] = Math.abs(u - Math.round(u)) < 1e-4 ? 1 : 0;
      }
      codes[b * 32 + e] = q;
    }
  }
  const bytes = dtype === "q8" ? new Uint8Array(codes.buffer) : new Uint8Array(n / 2);
  if (dtype === "q4") {
    for (let i = 0; i < n; i += 2) bytes[i / 2] = (codes[i] + 8) | ((codes[i + 1] + 8) << 4);
  }
  return { bytes, scales: new Uint8Array(scales.buffer), codes, near };
}
