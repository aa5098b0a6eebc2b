/**
 * Weights: the trunk's tensors under Hugging Face Llama names, where each named tensor lives on
 * the GPU (q/k/v and gate/up are fused into one matrix each, so a decode step reads them in one
 * pass; a matrix over the storage-binding limit is split by rows into parts), uploads that take
 * f32, f16 or bf16 data as a checkpoint stores it, and a seeded random initialisation.
 * @module
 */
import type { Arena, Tensor } from "../gpu/arena.ts";
import { InvalidInputError, ShapeError } from "../gpu/errors.ts";
import type { Matrix, MatrixPart, WeightDType } from "../kernels/dispatch.ts";
import type { ModelConfig } from "./config.ts";

/** Weights of one Llama transformer layer (a trunk layer, or a Meta-style MTP head). */
export interface LayerWeights {
  /** input_layernorm: [dModel] */
  inputNorm: Tensor;
  /** q_proj; k_proj; v_proj stacked: [(nHeads + 2 nKvHeads) headDim, dModel] */
  qkv: Matrix;
  /**
   * q_proj; k_proj; v_proj biases, stacked like `qkv`'s rows: [(nHeads + 2 nKvHeads) headDim];
   * null without `qkvBias`
   */
  qkvBias: Tensor | null;
  /** q_norm; k_norm: [2, headDim], per-head RMSNorm weights; null without `qkNorm` */
  qkNorm: Tensor | null;
  /** o_proj: [dModel, nHeads headDim] */
  o: Matrix;
  /** o_proj's bias: [dModel]; null without `oBias` */
  oBias: Tensor | null;
  /** post_attention_layernorm: [dModel] */
  postNorm: Tensor;
  /** gate_proj and up_proj, gated: [2 dFF, dModel] */
  gateUp: Matrix;
  /** down_proj: [dModel, dFF] */
  down: Matrix;
}

/** The trunk's weights on the GPU; heads 2..n keep their own (see heads/). */
export interface TrunkWeights {
  /** model.embed_tokens.weight: [vocabSize, dModel] */
  embed: Matrix;
  /** model.layers.{l}.* */
  layers: LayerWeights[];
  /** model.norm.weight: [dModel], the final norm shared by all heads */
  norm: Tensor;
  /** lm_head.weight: [vocabSize, dModel] (the embedding when tied), shared by all heads */
  lmHead: Matrix;
}

/** A run of rows of a named tensor: rows [row, row + rows) live at `offset` elements into `buffer`. */
export interface Segment {
  /** The buffer holding them. */
  buffer: GPUBuffer;
  /** Element offset in the buffer. */
  offset: number;
  /** First row of the tensor. */
  row: number;
  /** Rows in this run. */
  rows: number;
}

/** Where a named checkpoint tensor lives on the GPU. */
export interface Placement {
  /** Shape, e.g. [out, in] for a matrix, [n] for a vector. */
  shape: number[];
  /** Storage type on the GPU (vectors are always f32). */
  dtype: WeightDType;
  /** Where its rows live (one run unless its matrix is split into parts). */
  segments: Segment[];
}

/** q_proj, k_proj and v_proj's bias names under attention prefix `a`, with lengths. */
function qkvBiasBlocks(c: ModelConfig, a: string): [name: string, n: number][] {
  const hd = c.headDim;
  return [
    [`${a}.q_proj.bias`, c.nHeads * hd],
    [`${a}.k_proj.bias`, c.nKvHeads * hd],
    [`${a}.v_proj.bias`, c.nKvHeads * hd],
  ];
}

/** The tensors of one Llama layer under prefix `p`, with shapes (with the configured extras). */
export function layerTensorShapes(c: ModelConfig, p: string): [string, number[]][] {
  const d = c.dModel, hd = c.headDim;
  const a = `${p}.self_attn`;
  const out: [string, number[]][] = [
    [`${p}.input_layernorm.weight`, [d]],
    [`${a}.q_proj.weight`, [c.nHeads * hd, d]],
    [`${a}.k_proj.weight`, [c.nKvHeads * hd, d]],
    [`${a}.v_proj.weight`, [c.nKvHeads * hd, d]],
  ];
  if (c.qkvBias) out.push(...qkvBiasBlocks(c, a).map(([n, len]): [string, number[]] => [n, [len]]));
  if (c.qkNorm) out.push([`${a}.q_norm.weight`, [hd]], [`${a}.k_norm.weight`, [hd]]);
  out.push([`${a}.o_proj.weight`, [d, c.nHeads * hd]]);
  if (c.oBias) out.push([`${a}.o_proj.bias`, [d]]);
  out.push(
    [`${p}.post_attention_layernorm.weight`, [d]],
    [`${p}.mlp.gate_proj.weight`, [c.dFF, d]],
    [`${p}.mlp.up_proj.weight`, [c.dFF, d]],
    [`${p}.mlp.down_proj.weight`, [d, c.dFF]],
  );
  return out;
}

/** The trunk's tensors under their checkpoint names, with shapes (matrices have 2 dims). */
export function trunkTensorShapes(c: ModelConfig): [string, number[]][] {
  const out: [string, number[]][] = [["model.embed_tokens.weight", [c.vocabSize, c.dModel]]];
  for (let l = 0; l < c.nLayers; l++) out.push(...layerTensorShapes(c, `model.layers.${l}`));
  out.push(["model.norm.weight", [c.dModel]]);
  if (!c.tieEmbeddings) out.push(["lm_head.weight", [c.vocabSize, c.dModel]]);
  return out;
}

/**
 * Allocates weight buffers in an arena and records where each named tensor lives, so that
 * loading a checkpoint is a key-by-key copy. Matrices larger than `maxBindingBytes` are split by
 * output rows into parts that each fit one storage binding.
 */
export class WeightAllocator {
  /** Checkpoint tensor name -> where it lives. */
  readonly placements: Map<string, Placement> = new Map();
  readonly #arena: Arena;
  readonly #dtype: WeightDType;
  readonly #maxBytes: number;

  /** Matrices are stored as `dtype`; each buffer holds at most `maxBindingBytes`. */
  constructor(arena: Arena, o: { dtype: WeightDType; maxBindingBytes: number }) {
    this.#arena = arena;
    this.#dtype = o.dtype;
    this.#maxBytes = o.maxBindingBytes;
  }

  #rowsPerPart(label: string, cols: number, factor: number): number {
    const rowBytes = cols * factor * (this.#dtype === "f16" ? 2 : 4);
    // Rows in pairs keep every part's f16 data aligned to whole u32 words.
    const rows = Math.floor(this.#maxBytes / rowBytes / 2) * 2;
    if (rows < 2) {
      throw new ShapeError(
        `${label}: two rows of ${cols} take ${2 * rowBytes} bytes, over the binding limit of ` +
          `${this.#maxBytes} bytes`,
      );
    }
    return rows;
  }

  #parts(label: string, outputs: number, cols: number, gated: boolean): MatrixPart[] {
    const per = this.#rowsPerPart(label, cols, gated ? 2 : 1);
    const parts: MatrixPart[] = [];
    const elem = this.#dtype === "f16" ? 2 : 4;
    for (let start = 0; start < outputs; start += per) {
      const n = Math.min(per, outputs - start);
      const name = parts.length === 0 && n === outputs ? label : `${label}[${start}:${start + n}]`;
      const buffer = this.#arena.storage(name, n * (gated ? 2 : 1) * cols * elem);
      parts.push({ buffer, start, outputs: n });
    }
    return parts;
  }

  /** A matrix of named row blocks stacked in order (e.g. [q; k; v]), each [rows, cols]. */
  matrix(label: string, blocks: [name: string, rows: number][], cols: number): Matrix {
    const outputs = blocks.reduce((s, [, r]) => s + r, 0);
    const parts = this.#parts(label, outputs, cols, false);
    let at = 0;
    for (const [name, rows] of blocks) {
      const segments: Segment[] = [];
      for (const p of parts) {
        const lo = Math.max(at, p.start), hi = Math.min(at + rows, p.start + p.outputs);
        if (lo < hi) {
          segments.push({
            buffer: p.buffer,
            offset: (lo - p.start) * cols,
            row: lo - at,
            rows: hi - lo,
          });
        }
      }
      this.placements.set(name, { shape: [rows, cols], dtype: this.#dtype, segments });
      at += rows;
    }
    return { outputs, cols, dtype: this.#dtype, gated: false, parts };
  }

  /** SwiGLU's gate and up projections ([n, cols] each), stacked per part for the gated kernel. */
  gated(label: string, gate: string, up: string, n: number, cols: number): Matrix {
    const parts = this.#parts(label, n, cols, true);
    const place = (name: string, second: boolean) =>
      this.placements.set(name, {
        shape: [n, cols],
        dtype: this.#dtype,
        segments: parts.map((p) => ({
          buffer: p.buffer,
          offset: second ? p.outputs * cols : 0,
          row: p.start,
          rows: p.outputs,
        })),
      });
    place(gate, false);
    place(up, true);
    return { outputs: n, cols, dtype: this.#dtype, gated: true, parts };
  }

  /** f32 vectors of length `n` stacked in one tensor [names.length, n]. */
  vectors(label: string, names: string[], n: number): Tensor {
    const t = this.#arena.tensor(label, [names.length, n]);
    names.forEach((name, i) =>
      this.placements.set(name, {
        shape: [n],
        dtype: "f32",
        segments: [{ buffer: t.buffer, offset: i * n, row: 0, rows: 1 }],
      })
    );
    return t;
  }

  /**
   * f32 vectors of the given lengths concatenated in one tensor [sum of lengths] (e.g. the q, k
   * and v biases, laid out like the fused matrix's rows).
   */
  vectorBlocks(label: string, blocks: [name: string, n: number][]): Tensor {
    const t = this.#arena.tensor(label, [blocks.reduce((s, [, n]) => s + n, 0)]);
    let at = 0;
    for (const [name, n] of blocks) {
      this.placements.set(name, {
        shape: [n],
        dtype: "f32",
        segments: [{ buffer: t.buffer, offset: at, row: 0, rows: 1 }],
      });
      at += n;
    }
    return t;
  }

  /** One pre-norm Llama layer under prefix `p`, with the biases and q/k norms `c` asks for. */
  layer(c: ModelConfig, p: string): LayerWeights {
    const d = c.dModel, hd = c.headDim;
    const a = `${p}.self_attn`;
    return {
      inputNorm: this.vectors(`${p}.input_layernorm.weight`, [`${p}.input_layernorm.weight`], d),
      qkv: this.matrix(`${a}.qkv`, [
        [`${a}.q_proj.weight`, c.nHeads * hd],
        [`${a}.k_proj.weight`, c.nKvHeads * hd],
        [`${a}.v_proj.weight`, c.nKvHeads * hd],
      ], d),
      qkvBias: c.qkvBias ? this.vectorBlocks(`${a}.qkv_bias`, qkvBiasBlocks(c, a)) : null,
      qkNorm: c.qkNorm
        ? this.vectors(`${a}.qk_norm`, [`${a}.q_norm.weight`, `${a}.k_norm.weight`], hd)
        : null,
      o: this.matrix(`${a}.o_proj.weight`, [[`${a}.o_proj.weight`, d]], c.nHeads * hd),
      oBias: c.oBias ? this.vectors(`${a}.o_proj.bias`, [`${a}.o_proj.bias`], d) : null,
      postNorm: this.vectors(
        `${p}.post_attention_layernorm.weight`,
        [`${p}.post_attention_layernorm.weight`],
        d,
      ),
      gateUp: this.gated(
        `${p}.mlp.gate_up`,
        `${p}.mlp.gate_proj.weight`,
        `${p}.mlp.up_proj.weight`,
        c.dFF,
        d,
      ),
      down: this.matrix(`${p}.mlp.down_proj.weight`, [[`${p}.mlp.down_proj.weight`, d]], c.dFF),
    };
  }

  /** The trunk: embedding, layers, final norm, unembedding (the embedding itself when tied). */
  trunk(c: ModelConfig): TrunkWeights {
    const embed = this.matrix("model.embed_tokens.weight", [[
      "model.embed_tokens.weight",
      c.vocabSize,
    ]], c.dModel);
    const layers = Array.from({ length: c.nLayers }, (_, l) => this.layer(c, `model.layers.${l}`));
    const norm = this.vectors("model.norm.weight", ["model.norm.weight"], c.dModel);
    const lmHead = c.tieEmbeddings
      ? embed
      : this.matrix("lm_head.weight", [["lm_head.weight", c.vocabSize]], c.dModel);
    return { embed, layers, norm, lmHead };
  }
}

/** Tensor data as a checkpoint stores it: raw little-endian bytes and their type. */
export interface TensorBytes {
  /** The element type of `bytes`. */
  dtype: "f32" | "f16" | "bf16";
  /** The values, little-endian, row-major. */
  bytes: Uint8Array;
}

/** What `setTensor` accepts: f32 or f16 values, or raw bytes with their type. */
export type TensorData = Float32Array | Float16Array | TensorBytes;

function asBytes(data: TensorData): TensorBytes {
  if (data instanceof Float32Array) {
    return { dtype: "f32", bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  }
  if (data instanceof Float16Array) {
    return { dtype: "f16", bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  }
  return data;
}

const ELEM = { f32: 4, f16: 2, bf16: 2 } as const;
const CHUNK = 1 << 20; // elements converted at a time: host memory stays O(chunk), not O(tensor)

/** Values [from, to) of `src` as `target` storage bytes (f32 or f16), converting on the fly. */
function convert(src: TensorBytes, from: number, to: number, target: WeightDType): Uint8Array {
  const e = ELEM[src.dtype];
  const raw = src.bytes.subarray(from * e, to * e);
  if (src.dtype === target) return raw;
  // Copy when misaligned: typed views need aligned offsets.
  const aligned = raw.byteOffset % e === 0 ? raw : raw.slice();
  let f32: Float32Array;
  if (src.dtype === "f32") f32 = new Float32Array(aligned.buffer, aligned.byteOffset, to - from);
  else if (src.dtype === "f16") {
    f32 = Float32Array.from(new Float16Array(aligned.buffer, aligned.byteOffset, to - from));
  } else {
    const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, to - from);
    const u32 = new Uint32Array(u16.length);
    for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16;
    f32 = new Float32Array(u32.buffer);
  }
  if (target === "f32") return new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  const h = new Float16Array(f32);
  return new Uint8Array(h.buffer);
}

/**
 * Copies one tensor into place, converting f32/f16/bf16 data to the placement's storage type
 * a chunk at a time, so a 2 GB f16 checkpoint never needs a 4 GB f32 copy on the host.
 */
export function uploadTensor(arena: Arena, name: string, p: Placement, data: TensorData): void {
  const src = asBytes(data);
  const n = p.shape.reduce((a, b) => a * b, 1);
  if (!(src.dtype in ELEM)) {
    throw new InvalidInputError(`${name}: data of type ${src.dtype}; give f32, f16 or bf16`);
  }
  if (src.bytes.byteLength !== n * ELEM[src.dtype]) {
    throw new ShapeError(
      `${name}: shape [${p.shape}] needs ${n} values, got ${
        src.bytes.byteLength / ELEM[src.dtype]
      }`,
    );
  }
  const cols = p.shape.length === 2 ? p.shape[1] : n;
  const out = p.dtype === "f16" && p.shape.length === 2 ? "f16" : "f32";
  const size = ELEM[out];
  for (const s of p.segments) {
    const first = s.row * cols, count = s.rows * cols;
    for (let i = 0; i < count; i += CHUNK) {
      const m = Math.min(CHUNK, count - i);
      arena.write(s.buffer, convert(src, first + i, first + i + m, out), (s.offset + i) * size);
    }
  }
}

function hashString(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Fills `out` with uniform values of the given mean and standard deviation (mulberry32). */
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
 * Seeded random values for the named tensors (a tensor's values depend only on the seed and its
 * name). Matrices have standard deviation 1/sqrt(fan-in), embeddings 1, norm weights (q/k norms
 * included) are near 1 and biases near 0 (attention biases with a wider spread); all are drawn,
 * none is constant, so tests see every weight act. With `f16`, matrices come rounded to f16:
 * exactly the values an f16 model holds.
 */
export function* randomTensors(
  shapes: [string, number[]][],
  o: { seed: number; f16: boolean },
): Generator<[string, Float32Array, number[]]> {
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const s = hashString(name, o.seed);
    if (name.endsWith("norm.weight")) fillUniform(data, s, 1, 0.1);
    // Attention biases get a wider spread (Qwen2's are large), so a launch that dropped one
    // would change tokens, not only logits, in the token-level tests.
    else if (name.includes(".self_attn.") && name.endsWith(".bias")) fillUniform(data, s, 0, 0.5);
    else if (name.endsWith(".bias")) fillUniform(data, s, 0, 0.1);
    else if (name === "model.embed_tokens.weight") fillUniform(data, s, 0, 1);
    else fillUniform(data, s, 0, 1 / Math.sqrt(shape[1]));
    if (shape.length === 2 && o.f16) data.set(new Float16Array(data));
    yield [name, data, shape];
  }
}
