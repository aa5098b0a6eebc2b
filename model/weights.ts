/**
 * Weights: the trunk's tensors under Hugging Face Llama names, where each named tensor lives on
 * the GPU (q/k/v and gate/up are fused into one matrix each, so a decode step reads them in one
 * pass; a matrix over the storage-binding limit is split by rows into parts), uploads that take
 * f32, f16 or bf16 data as a checkpoint stores it, and a seeded random initialisation.
 * @module
 */
import type { Arena, Tensor } from "../gpu/arena.ts";
import { InvalidInputError, ShapeError } from "../gpu/errors.ts";
import {
  isQuantized,
  type Matrix,
  type MatrixPart,
  QUANT_BLOCK,
  quantLayout,
  run,
  type WeightDType,
} from "../kernels/dispatch.ts";
import { checkQuantizable, quantize } from "../kernels/quantize.ts";
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
  /** Rows of the whole part buffer (both halves of a gated one): where a quantized part's scales start. */
  partRows: number;
}

/** Where a named checkpoint tensor lives on the GPU. */
export interface Placement {
  /** Shape, e.g. [out, in] for a matrix, [n] for a vector. */
  shape: number[];
  /** Storage type on the GPU (vectors are always f32; embeddings f16 in a quantized model). */
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

  #rowsPerPart(label: string, cols: number, factor: number, dtype: WeightDType): number {
    // A quantized part is sized as its f16 form, which prefill dequantizes it to.
    const rowBytes = cols * factor * (dtype === "f32" ? 4 : 2);
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

  #parts(
    label: string,
    outputs: number,
    cols: number,
    gated: boolean,
    dtype: WeightDType,
  ): MatrixPart[] {
    if (isQuantized(dtype)) checkQuantizable(label, cols);
    const per = this.#rowsPerPart(label, cols, gated ? 2 : 1, dtype);
    const parts: MatrixPart[] = [];
    const rowsOf = (n: number) => n * (gated ? 2 : 1);
    const bytes = (n: number) =>
      isQuantized(dtype)
        ? quantLayout(dtype, rowsOf(n), cols).words * 4
        : rowsOf(n) * cols * (dtype === "f16" ? 2 : 4);
    for (let start = 0; start < outputs; start += per) {
      const n = Math.min(per, outputs - start);
      const name = parts.length === 0 && n === outputs ? label : `${label}[${start}:${start + n}]`;
      const buffer = this.#arena.storage(name, bytes(n));
      parts.push({ buffer, start, outputs: n });
    }
    return parts;
  }

  /**
   * A matrix of named row blocks stacked in order (e.g. [q; k; v]), each [rows, cols], stored as
   * the model's type or `dtype`.
   */
  matrix(
    label: string,
    blocks: [name: string, rows: number][],
    cols: number,
    dtype: WeightDType = this.#dtype,
  ): Matrix {
    const outputs = blocks.reduce((s, [, r]) => s + r, 0);
    const parts = this.#parts(label, outputs, cols, false, dtype);
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
            partRows: p.outputs,
          });
        }
      }
      this.placements.set(name, { shape: [rows, cols], dtype, segments });
      at += rows;
    }
    return { outputs, cols, dtype, gated: false, parts };
  }

  /** SwiGLU's gate and up projections ([n, cols] each), stacked per part for the gated kernel. */
  gated(label: string, gate: string, up: string, n: number, cols: number): Matrix {
    const parts = this.#parts(label, n, cols, true, this.#dtype);
    const place = (name: string, second: boolean) =>
      this.placements.set(name, {
        shape: [n, cols],
        dtype: this.#dtype,
        segments: parts.map((p) => ({
          buffer: p.buffer,
          offset: second ? p.outputs * cols : 0,
          row: p.start,
          rows: p.outputs,
          partRows: 2 * p.outputs,
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
        segments: [{ buffer: t.buffer, offset: i * n, row: 0, rows: 1, partRows: 1 }],
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
        segments: [{ buffer: t.buffer, offset: at, row: 0, rows: 1, partRows: 1 }],
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

  /**
   * The trunk: embedding, layers, final norm, unembedding (the embedding itself when tied). A
   * quantized model keeps its embedding in f16 (rows are gathered, not streamed), so a tied
   * unembedding stays f16 too.
   */
  trunk(c: ModelConfig): TrunkWeights {
    const embed = this.matrix(
      "model.embed_tokens.weight",
      [["model.embed_tokens.weight", c.vocabSize]],
      c.dModel,
      isQuantized(this.#dtype) ? "f16" : this.#dtype,
    );
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
  /** The element type of `bytes`: a float type, or a quantized matrix (q8, q4). */
  dtype: "f32" | "f16" | "bf16" | "q8" | "q4";
  /**
   * The values, little-endian, row-major. q8: one int8 q per weight; q4: two weights per byte,
   * the first in the low nibble, each stored as q + 8 for q in [-8, 7]. A weight is q d.
   */
  bytes: Uint8Array;
  /** q8 and q4: the f16 scale d of each block of 32 weights along a row, [rows, cols / 32]. */
  scales?: Uint8Array;
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

/** Values [from, to) of float data `src` as f32 or f16 storage bytes, converting on the fly. */
function convert(
  src: TensorBytes & { dtype: "f32" | "f16" | "bf16" },
  from: number,
  to: number,
  target: "f32" | "f16",
): Uint8Array {
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

/** The f32 values of quantized data ([rows, cols], q8 or q4): q d for each weight. */
export function dequantizeBytes(src: TensorBytes, cols: number): Float32Array {
  const q4 = src.dtype === "q4";
  const n = q4 ? src.bytes.length * 2 : src.bytes.length;
  const sb = src.scales!;
  const scales = new Float16Array(sb.buffer.slice(sb.byteOffset, sb.byteOffset + sb.byteLength));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const q = q4 ? ((src.bytes[i >> 1] >> ((i & 1) * 4)) & 15) - 8 : (src.bytes[i] << 24) >> 24;
    const row = Math.floor(i / cols), col = i % cols;
    out[i] = q * scales[row * (cols / QUANT_BLOCK) + Math.floor(col / QUANT_BLOCK)];
  }
  return out;
}

/** Throws unless quantized data has the sizes a [rows, cols] tensor needs. */
function checkQuantizedSize(name: string, src: TensorBytes, rows: number, cols: number): void {
  const values = src.dtype === "q4" ? rows * cols / 2 : rows * cols;
  const scales = rows * cols / QUANT_BLOCK * 2;
  if (
    cols % QUANT_BLOCK !== 0 || src.bytes.byteLength !== values ||
    src.scales?.byteLength !== scales
  ) {
    throw new ShapeError(
      `${name}: ${src.dtype} data for shape [${rows}, ${cols}] needs ${values} value bytes and ` +
        `${scales} scale bytes, got ${src.bytes.byteLength} and ${src.scales?.byteLength ?? 0}`,
    );
  }
}

/**
 * Copies one tensor into place, converting f32/f16/bf16 data to the placement's storage type
 * a chunk at a time, so a 2 GB f16 checkpoint never needs a 4 GB f32 copy on the host. Float
 * data for a quantized matrix is quantized on the GPU, a chunk of rows at a time; quantized data
 * of the placement's type is copied as it is (bit for bit).
 */
export function uploadTensor(arena: Arena, name: string, p: Placement, data: TensorData): void {
  let src = asBytes(data);
  const n = p.shape.reduce((a, b) => a * b, 1);
  const cols = p.shape.length === 2 ? p.shape[1] : n;
  if (src.dtype === "q8" || src.dtype === "q4") {
    if (p.shape.length !== 2) {
      throw new InvalidInputError(`${name}: ${src.dtype} data for a vector; give f32 or f16`);
    }
    checkQuantizedSize(name, src, p.shape[0], cols);
    if (p.dtype === src.dtype) return uploadQuantized(arena, p, src, cols);
    const f32 = dequantizeBytes(src, cols);
    src = { dtype: "f32", bytes: new Uint8Array(f32.buffer) };
  }
  if (!(src.dtype in ELEM)) {
    throw new InvalidInputError(`${name}: data of type ${src.dtype}; give f32, f16 or bf16`);
  }
  const floats = src as TensorBytes & { dtype: "f32" | "f16" | "bf16" };
  if (src.bytes.byteLength !== n * ELEM[floats.dtype]) {
    throw new ShapeError(
      `${name}: shape [${p.shape}] needs ${n} values, got ${
        src.bytes.byteLength / ELEM[floats.dtype]
      }`,
    );
  }
  if ((p.dtype === "q8" || p.dtype === "q4") && p.shape.length === 2) {
    return quantizeOnGpu(arena, name, p, p.dtype, floats, cols);
  }
  const out = p.dtype === "f16" && p.shape.length === 2 ? "f16" : "f32";
  const size = ELEM[out];
  for (const s of p.segments) {
    const first = s.row * cols, count = s.rows * cols;
    for (let i = 0; i < count; i += CHUNK) {
      const m = Math.min(CHUNK, count - i);
      arena.write(s.buffer, convert(floats, first + i, first + i + m, out), (s.offset + i) * size);
    }
  }
}

/** Float rows into a quantized placement: f32 chunks to a staging buffer, quantized there. */
function quantizeOnGpu(
  arena: Arena,
  name: string,
  p: Placement,
  dtype: "q8" | "q4",
  src: TensorBytes & { dtype: "f32" | "f16" | "bf16" },
  cols: number,
): void {
  const gpu = arena.gpu;
  const temp = gpu.arena(`quantize ${name}`);
  try {
    const chunkRows = Math.max(1, Math.floor(CHUNK / cols));
    const staging = temp.storage("staging", Math.min(chunkRows, p.shape[0]) * cols * 4);
    for (const s of p.segments) {
      for (let r = 0; r < s.rows; r += chunkRows) {
        const rows = Math.min(chunkRows, s.rows - r);
        const first = (s.row + r) * cols;
        temp.write(staging, convert(src, first, first + rows * cols, "f32"));
        run(
          gpu,
          quantize(temp, {
            src: staging,
            dst: s.buffer,
            dtype,
            rows,
            cols,
            dstRow: s.offset / cols + r,
            partRows: s.partRows,
            label: `quantize ${name}`,
          }),
          `quantizing ${name}`,
        );
      }
    }
  } finally {
    // Freed once the GPU is done with them: destroying a buffer that submitted work still reads
    // is left to the implementation to defer, and lavapipe was seen corrupting its heap at exit.
    gpu.device.queue.onSubmittedWorkDone().then(() => temp.dispose(), () => temp.dispose());
  }
}

/** Quantized data of the placement's own type: values and scales copied row block by block. */
function uploadQuantized(arena: Arena, p: Placement, src: TensorBytes, cols: number): void {
  const dtype = p.dtype as "q8" | "q4";
  const rowBytes = dtype === "q8" ? cols : cols / 2;
  const blocks = cols / QUANT_BLOCK;
  for (const s of p.segments) {
    const l = quantLayout(dtype, s.partRows, cols);
    const row0 = s.offset / cols; // the segment's first row in its part
    arena.write(
      s.buffer,
      src.bytes.subarray(s.row * rowBytes, (s.row + s.rows) * rowBytes),
      row0 * l.values * 4,
    );
    // Scale rows are padded to whole words in the part: copy them into that layout.
    const padded = new Uint8Array(s.rows * l.scaleStride * 4);
    for (let r = 0; r < s.rows; r++) {
      const from = (s.row + r) * blocks * 2;
      padded.set(src.scales!.subarray(from, from + blocks * 2), r * l.scaleStride * 4);
    }
    arena.write(s.buffer, padded, (l.scaleBase + row0 * l.scaleStride) * 4);
  }
}

/**
 * Reads a quantized placement back as checkpoint bytes (values and scales, packed as
 * {@link TensorBytes} describes); `read` fetches `size` bytes at `offset` of a buffer.
 */
export async function readQuantized(
  p: Placement,
  read: (buffer: GPUBuffer, size: number, offset: number) => Promise<ArrayBuffer>,
): Promise<TensorBytes> {
  const dtype = p.dtype as "q8" | "q4";
  const [rows, cols] = p.shape;
  const rowBytes = dtype === "q8" ? cols : cols / 2;
  const blocks = cols / QUANT_BLOCK;
  const bytes = new Uint8Array(rows * rowBytes);
  const scales = new Uint8Array(rows * blocks * 2);
  for (const s of p.segments) {
    const l = quantLayout(dtype, s.partRows, cols);
    const row0 = s.offset / cols;
    bytes.set(
      new Uint8Array(await read(s.buffer, s.rows * rowBytes, row0 * l.values * 4)),
      s.row * rowBytes,
    );
    const padded = new Uint8Array(
      await read(s.buffer, s.rows * l.scaleStride * 4, (l.scaleBase + row0 * l.scaleStride) * 4),
    );
    for (let r = 0; r < s.rows; r++) {
      scales.set(
        padded.subarray(r * l.scaleStride * 4, r * l.scaleStride * 4 + blocks * 2),
        (s.row + r) * blocks * 2,
      );
    }
  }
  return { dtype, bytes, scales };
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
