/**
 * The whole model on the CPU in f64, from the same named tensors as the GPU model: the ground
 * truth for tiny configurations. Reads like the equations; speed is not a goal.
 * @module
 */
import {
  addRef,
  attentionRef,
  embedRef,
  matmulRef,
  rmsnormRef,
  ropeRef,
  silu,
  swigluRef,
} from "../kernels/reference.ts";
import type { ModelConfig } from "./config.ts";

type Tensors = ReadonlyMap<string, Float32Array>;

function get(t: Tensors, name: string): Float32Array {
  const v = t.get(name);
  if (!v) throw new RangeError(`reference: missing tensor ${name}`);
  return v;
}

/** One pre-norm Llama layer over a whole sequence x [T, dModel] at positions 0..T-1. */
export function layerRef(
  c: ModelConfig,
  t: Tensors,
  prefix: string,
  x: Float64Array,
): Float64Array {
  const d = c.dModel, hd = c.headDim;
  const rows = x.length / d;
  const xn = rmsnormRef(x, get(t, `${prefix}.input_layernorm.weight`), d, c.normEps);
  const q = matmulRef(xn, get(t, `${prefix}.self_attn.q_proj.weight`), d);
  const k = matmulRef(xn, get(t, `${prefix}.self_attn.k_proj.weight`), d);
  const v = matmulRef(xn, get(t, `${prefix}.self_attn.v_proj.weight`), d);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < c.nHeads; h++) {
      const a = q.subarray((r * c.nHeads + h) * hd, (r * c.nHeads + h + 1) * hd);
      ropeRef(a, r, c.ropeTheta);
    }
    for (let h = 0; h < c.nKvHeads; h++) {
      const a = k.subarray((r * c.nKvHeads + h) * hd, (r * c.nKvHeads + h + 1) * hd);
      ropeRef(a, r, c.ropeTheta);
    }
  }
  const attn = attentionRef(q, k, v, {
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: hd,
    pos0: 0,
  });
  const mid = addRef(
    x,
    matmulRef(attn, get(t, `${prefix}.self_attn.o_proj.weight`), c.nHeads * hd),
  );
  const xn2 = rmsnormRef(mid, get(t, `${prefix}.post_attention_layernorm.weight`), d, c.normEps);
  const gate = matmulRef(xn2, get(t, `${prefix}.mlp.gate_proj.weight`), d);
  const up = matmulRef(xn2, get(t, `${prefix}.mlp.up_proj.weight`), d);
  const gu = new Float64Array(rows * 2 * c.dFF);
  for (let r = 0; r < rows; r++) {
    gu.set(gate.subarray(r * c.dFF, (r + 1) * c.dFF), r * 2 * c.dFF);
    gu.set(up.subarray(r * c.dFF, (r + 1) * c.dFF), r * 2 * c.dFF + c.dFF);
  }
  const ff = swigluRef(gu, c.dFF);
  return addRef(mid, matmulRef(ff, get(t, `${prefix}.mlp.down_proj.weight`), c.dFF));
}

/**
 * Logits of every head at every position of `tokens`: [head][position * vocab + id], head 1
 * first, the same layout as {@link forward}.
 */
export function referenceForward(
  c: ModelConfig,
  t: Tensors,
  tokens: readonly number[],
): Float64Array[] {
  const d = c.dModel;
  let h = embedRef(get(t, "model.embed_tokens.weight"), d, tokens);
  for (let l = 0; l < c.nLayers; l++) h = layerRef(c, t, `model.layers.${l}`, h);
  const norm = get(t, "model.norm.weight");
  const lm = get(t, c.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  const unembed = (x: Float64Array) => matmulRef(rmsnormRef(x, norm, d, c.normEps), lm, d);
  const out = [unembed(h)];
  for (let j = 0; j < c.nFuture - 1; j++) {
    if (c.headKind === "transformer") {
      out.push(unembed(layerRef(c, t, `mtp_heads.${j}`, h)));
    } else {
      const u = rmsnormRef(h, norm, d, c.normEps);
      const lin = matmulRef(u, get(t, `medusa_head.${j}.0.linear.weight`), d);
      const b = get(t, `medusa_head.${j}.0.linear.bias`);
      for (let i = 0; i < lin.length; i++) lin[i] = u[i] + silu(lin[i] + b[i % d]);
      out.push(matmulRef(lin, lm, d));
    }
  }
  return out;
}

/** Greedy continuation by the reference: argmax of head 1 at the last position, repeated. */
export function referenceGreedy(
  c: ModelConfig,
  t: Tensors,
  prompt: readonly number[],
  maxTokens: number,
): number[] {
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < maxTokens && seq.length < c.maxSeqLen; i++) {
    const logits = referenceForward({ ...c, nFuture: 1 }, t, seq)[0];
    const v = c.vocabSize;
    const last = logits.subarray((seq.length - 1) * v, seq.length * v);
    let best = 0;
    for (let j = 1; j < v; j++) if (last[j] > last[best]) best = j;
    seq.push(best);
    out.push(best);
  }
  return out;
}
