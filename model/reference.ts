/**
 * The trunk on the CPU in f64, from the same named tensors as the GPU model: the ground truth
 * for tiny configurations. Reads like the equations; speed is not a goal. The heads' references
 * live with each head kind (heads/), the whole model's in heads/reference.ts.
 * @module
 */
import {
  addRef,
  attentionRef,
  embedRef,
  matmulRef,
  rmsnormRef,
  ropeRef,
  swigluRef,
} from "../kernels/reference.ts";
import { InvalidInputError } from "../gpu/errors.ts";
import type { ModelConfig } from "./config.ts";

/** Named tensors (checkpoint names), as the reference reads them. */
export type Tensors = ReadonlyMap<string, Float32Array>;

/** The tensor `name`; throws if missing. */
export function get(t: Tensors, name: string): Float32Array {
  const v = t.get(name);
  if (!v) throw new InvalidInputError(`reference: missing tensor ${name}`);
  return v;
}

/** y = x W^T (+ b, broadcast over rows): the HF Linear `name`, with its bias when it has one. */
function linearRef(
  x: Float64Array,
  t: Tensors,
  o: { name: string; k: number; bias: boolean },
): Float64Array {
  const y = matmulRef(x, get(t, `${o.name}.weight`), o.k);
  if (!o.bias) return y;
  const b = get(t, `${o.name}.bias`);
  for (let i = 0; i < y.length; i++) y[i] += b[i % b.length];
  return y;
}

/**
 * One pre-norm Llama layer over a whole sequence x [T, dModel] at positions 0..T-1, with the
 * biases (Qwen2, Llama attention_bias), per-head q/k norms (Qwen3) and RoPE scaling `c` asks for.
 */
export function layerRef(
  c: ModelConfig,
  t: Tensors,
  prefix: string,
  x: Float64Array,
): Float64Array {
  const d = c.dModel, hd = c.headDim;
  const rows = x.length / d;
  const a = `${prefix}.self_attn`;
  const xn = rmsnormRef(x, get(t, `${prefix}.input_layernorm.weight`), d, c.normEps);
  const bias = c.qkvBias;
  let q = linearRef(xn, t, { name: `${a}.q_proj`, k: d, bias });
  let k = linearRef(xn, t, { name: `${a}.k_proj`, k: d, bias });
  const v = linearRef(xn, t, { name: `${a}.v_proj`, k: d, bias });
  if (c.qkNorm) {
    // Rows of hd values are the heads: HF views q as [..., heads, head_dim] and norms the last axis.
    q = rmsnormRef(q, get(t, `${a}.q_norm.weight`), hd, c.normEps);
    k = rmsnormRef(k, get(t, `${a}.k_norm.weight`), hd, c.normEps);
  }
  const rope = { theta: c.ropeTheta, scaling: c.ropeScaling };
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < c.nHeads; h++) {
      ropeRef(q.subarray((r * c.nHeads + h) * hd, (r * c.nHeads + h + 1) * hd), r, rope);
    }
    for (let h = 0; h < c.nKvHeads; h++) {
      ropeRef(k.subarray((r * c.nKvHeads + h) * hd, (r * c.nKvHeads + h + 1) * hd), r, rope);
    }
  }
  if (c.kvDtype === "f16") {
    // The KV cache stores keys (after RoPE) and values rounded to f16.
    k.set(Float16Array.from(k));
    v.set(Float16Array.from(v));
  }
  const attn = attentionRef(q, k, v, {
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: hd,
    pos0: 0,
  });
  const o = linearRef(attn, t, { name: `${a}.o_proj`, k: c.nHeads * hd, bias: c.oBias });
  const mid = addRef(x, o);
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

/** The trunk's hidden states (before the final norm) at every position of `tokens`. */
export function trunkRef(c: ModelConfig, t: Tensors, tokens: readonly number[]): Float64Array {
  let h = embedRef(get(t, "model.embed_tokens.weight"), c.dModel, tokens);
  for (let l = 0; l < c.nLayers; l++) h = layerRef(c, t, `model.layers.${l}`, h);
  return h;
}

/** logits = RMSNorm(x) W_unembed^T: the shared final norm and unembedding, row by row. */
export function unembedRef(c: ModelConfig, t: Tensors, x: Float64Array): Float64Array {
  const lm = get(t, c.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  return matmulRef(rmsnormRef(x, get(t, "model.norm.weight"), c.dModel, c.normEps), lm, c.dModel);
}
