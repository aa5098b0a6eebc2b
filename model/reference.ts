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
