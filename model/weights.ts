/**
 * Weights: the tensor list under Hugging Face Llama names, where each tensor lives on the GPU
 * (q/k/v and gate/up are fused into one matrix each, so a decode step reads them in one pass),
 * and a seeded random initialisation.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { ConfigError } from "../gpu/errors.ts";
import type { Matrix } from "../kernels/dispatch.ts";
import type { ModelConfig } from "./config.ts";

/**
 * Weights of one Llama transformer layer (trunk layer or Meta-style MTP head).
 *
 * @example
 * ```ts
 * import type { LayerWeights } from "@ahead/mtp";
 * const qkvRows = (w: LayerWeights) => w.qkv.rows;
 * ```
 */
export interface LayerWeights {
  /** input_layernorm: [dModel] */
  inputNorm: GPUBuffer;
  /** q_proj; k_proj; v_proj stacked: [(nHeads + 2 nKvHeads) headDim, dModel] */
  qkv: Matrix;
  /** o_proj: [dModel, nHeads headDim] */
  o: Matrix;
  /** post_attention_layernorm: [dModel] */
  postNorm: GPUBuffer;
  /** gate_proj; up_proj stacked: [2 dFF, dModel] */
  gateUp: Matrix;
  /** down_proj: [dModel, dFF] */
  down: Matrix;
}

/**
 * Medusa heads 2..nFuture, stacked: y_j = u + silu(W_j u + b_j).
 *
 * @example
 * ```ts
 * import type { MedusaWeights } from "@ahead/mtp";
 * const heads = (m: MedusaWeights) => m.w.rows / m.w.cols;
 * ```
 */
export interface MedusaWeights {
  /** medusa_head.{j}.0.linear.weight stacked: [(nFuture - 1) dModel, dModel] */
  w: Matrix;
  /** medusa_head.{j}.0.linear.bias stacked: [(nFuture - 1) dModel] */
  bias: GPUBuffer;
}

/**
 * Every weight of a model, on the GPU.
 *
 * @example
 * ```ts
 * import { createModel } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 2, dFF: 64, maxSeqLen: 32 });
 * console.log(model.weights.layers.length); // 2
 * model.dispose();
 * ```
 */
export interface Weights {
  /** model.embed_tokens.weight: [vocabSize, dModel] */
  embed: Matrix;
  /** model.layers.{l}.*: the trunk */
  layers: LayerWeights[];
  /** model.norm.weight: [dModel], the final norm shared by all heads */
  norm: GPUBuffer;
  /** lm_head.weight: [vocabSize, dModel] (the embedding when tied), shared by all heads */
  lmHead: Matrix;
  /** mtp_heads.{j}.*: one layer per head 2..nFuture when headKind is "transformer" */
  headLayers: LayerWeights[];
  /** medusa_head.*: when headKind is "medusa" */
  medusa: MedusaWeights | null;
}

/**
 * Where a named tensor lives: a buffer, an element offset into it, and its shape.
 *
 * @example
 * ```ts
 * import { createModel } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 32 });
 * console.log(model.placements.get("model.layers.0.self_attn.k_proj.weight")?.offset); // 1024
 * model.dispose();
 * ```
 */
export interface Placement {
  /** The buffer holding it (fused tensors share one). */
  buffer: GPUBuffer;
  /** Offset in elements. */
  offset: number;
  /** Shape, e.g. [out, in] for a matrix. */
  shape: number[];
  /** Stored as f16 (matrices of an f16 model); vectors are always f32. */
  f16: boolean;
}

/**
 * The tensors of a model under their checkpoint names, with shapes. Matrices have 2 dims.
 *
 * @example
 * ```ts
 * import { parseConfig, tensorShapes } from "@ahead/mtp";
 * const c = parseConfig({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 32, nFuture: 1 });
 * console.log(tensorShapes(c)[1]); // ["model.layers.0.input_layernorm.weight", [32]]
 * ```
 */
export function tensorShapes(c: ModelConfig): [string, number[]][] {
  const d = c.dModel, hd = c.headDim;
  const layer = (p: string): [string, number[]][] => [
    [`${p}.input_layernorm.weight`, [d]],
    [`${p}.self_attn.q_proj.weight`, [c.nHeads * hd, d]],
    [`${p}.self_attn.k_proj.weight`, [c.nKvHeads * hd, d]],
    [`${p}.self_attn.v_proj.weight`, [c.nKvHeads * hd, d]],
    [`${p}.self_attn.o_proj.weight`, [d, c.nHeads * hd]],
    [`${p}.post_attention_layernorm.weight`, [d]],
    [`${p}.mlp.gate_proj.weight`, [c.dFF, d]],
    [`${p}.mlp.up_proj.weight`, [c.dFF, d]],
    [`${p}.mlp.down_proj.weight`, [d, c.dFF]],
  ];
  const out: [string, number[]][] = [["model.embed_tokens.weight", [c.vocabSize, d]]];
  for (let l = 0; l < c.nLayers; l++) out.push(...layer(`model.layers.${l}`));
  out.push(["model.norm.weight", [d]]);
  if (!c.tieEmbeddings) out.push(["lm_head.weight", [c.vocabSize, d]]);
  for (let j = 0; j < c.nFuture - 1; j++) {
    if (c.headKind === "transformer") out.push(...layer(`mtp_heads.${j}`));
    else {
      out.push([`medusa_head.${j}.0.linear.weight`, [d, d]]);
      out.push([`medusa_head.${j}.0.linear.bias`, [d]]);
    }
  }
  return out;
}

/**
 * Allocates the GPU buffers of a model and returns them with a map from checkpoint names to
 * placements, so loading a checkpoint is a key-by-key copy.
 */
export function allocateWeights(
  gpu: Gpu,
  c: ModelConfig,
): { weights: Weights; placements: Map<string, Placement> } {
  const f16 = c.dtype === "f16";
  const maxBinding = gpu.device.limits.maxStorageBufferBindingSize;
  const placements = new Map<string, Placement>();
  const matrix = (name: string, parts: [string, number][], cols: number): Matrix => {
    const rows = parts.reduce((s, [, r]) => s + r, 0);
    const bytes = rows * cols * (f16 ? 2 : 4);
    if (bytes > maxBinding) {
      throw new ConfigError(
        `${name} needs ${bytes} bytes, over this device's storage binding limit of ${maxBinding}: ` +
          `use dtype "f16" or a smaller model`,
      );
    }
    const buffer = gpu.storage(name, bytes);
    let offset = 0;
    for (const [part, r] of parts) {
      placements.set(part, { buffer, offset, shape: [r, cols], f16 });
      offset += r * cols;
    }
    return { buffer, rows, cols, f16 };
  };
  const vector = (name: string, n: number, parts: string[] = [name]): GPUBuffer => {
    const buffer = gpu.storage(name, n * 4 * parts.length);
    parts.forEach((p, i) => placements.set(p, { buffer, offset: i * n, shape: [n], f16: false }));
    return buffer;
  };
  const d = c.dModel, hd = c.headDim;
  const layer = (p: string): LayerWeights => ({
    inputNorm: vector(`${p}.input_layernorm.weight`, d),
    qkv: matrix(`${p}.self_attn.qkv`, [
      [`${p}.self_attn.q_proj.weight`, c.nHeads * hd],
      [`${p}.self_attn.k_proj.weight`, c.nKvHeads * hd],
      [`${p}.self_attn.v_proj.weight`, c.nKvHeads * hd],
    ], d),
    o: matrix(`${p}.self_attn.o_proj.weight`, [[`${p}.self_attn.o_proj.weight`, d]], c.nHeads * hd),
    postNorm: vector(`${p}.post_attention_layernorm.weight`, d),
    gateUp: matrix(`${p}.mlp.gate_up`, [
      [`${p}.mlp.gate_proj.weight`, c.dFF],
      [`${p}.mlp.up_proj.weight`, c.dFF],
    ], d),
    down: matrix(`${p}.mlp.down_proj.weight`, [[`${p}.mlp.down_proj.weight`, d]], c.dFF),
  });
  const embed = matrix(
    "model.embed_tokens.weight",
    [["model.embed_tokens.weight", c.vocabSize]],
    d,
  );
  const layers = Array.from({ length: c.nLayers }, (_, l) => layer(`model.layers.${l}`));
  const norm = vector("model.norm.weight", d);
  const lmHead = c.tieEmbeddings
    ? embed
    : matrix("lm_head.weight", [["lm_head.weight", c.vocabSize]], d);
  const extra = Array.from({ length: c.nFuture - 1 }, (_, j) => j);
  const headLayers = c.headKind === "transformer" ? extra.map((j) => layer(`mtp_heads.${j}`)) : [];
  const medusa = c.headKind === "medusa" && extra.length > 0
    ? {
      w: matrix(
        "medusa_head.weight",
        extra.map((j) => [`medusa_head.${j}.0.linear.weight`, d] as [string, number]),
        d,
      ),
      bias: vector("medusa_head.bias", d, extra.map((j) => `medusa_head.${j}.0.linear.bias`)),
    }
    : null;
  return { weights: { embed, layers, norm, lmHead, headLayers, medusa }, placements };
}

/** Copies one tensor (f32 values, converted to f16 where the placement says so) to the GPU. */
export function uploadTensor(gpu: Gpu, p: Placement, data: Float32Array): void {
  const n = p.shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) {
    throw new RangeError(`tensor of shape [${p.shape}] needs ${n} values, got ${data.length}`);
  }
  if (p.f16) gpu.write(p.buffer, new Float16Array(data), p.offset * 2);
  else gpu.write(p.buffer, data, p.offset * 4);
}

function hashString(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Fills `out` with uniform values of the given standard deviation (mulberry32 stream). */
function fillUniform(out: Float32Array, seed: number, mean: number, std: number): void {
  let a = seed >>> 0;
  const scale = std * Math.sqrt(3) * 2 / 4294967296;
  const shift = mean - std * Math.sqrt(3);
  for (let i = 0; i < out.length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) * scale + shift;
  }
}

/**
 * The seeded random weights of a model, tensor by tensor (a tensor's values depend only on the
 * seed and its name). Matrices have standard deviation 1/sqrt(fan-in), embeddings 1, norm weights
 * are near 1 and biases near 0; all are drawn, none is constant, so tests see every weight act.
 * Matrices of an f16 model come rounded to f16: these are exactly the values on the GPU.
 */
export function* randomTensors(
  c: ModelConfig,
  seed: number,
): Generator<[string, Float32Array, number[]]> {
  for (const [name, shape] of tensorShapes(c)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const s = hashString(name, seed);
    if (name.endsWith("norm.weight")) fillUniform(data, s, 1, 0.1);
    else if (name.endsWith(".bias")) fillUniform(data, s, 0, 0.1);
    else if (name === "model.embed_tokens.weight") fillUniform(data, s, 0, 1);
    else fillUniform(data, s, 0, 1 / Math.sqrt(shape[1]));
    if (shape.length === 2 && c.dtype === "f16") data.set(new Float16Array(data));
    yield [name, data, shape];
  }
}
