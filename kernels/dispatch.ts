/**
 * What every kernel launcher shares: a dispatch record built once (pipeline, bind group,
 * workgroup counts) after checking that every bound buffer is large enough, and replayed into a
 * compute pass each step.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { type Arena, numel, type Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";

/** How a kernel binds a buffer: read-only or read-write storage. Binding 0 is the uniform params. */
export type Access = "read" | "write";

/**
 * One recorded kernel launch; encoding it is setPipeline + setBindGroup + dispatch. Programs
 * (a decode step, a prefill chunk) are arrays of these, built once and replayed.
 */
export interface Dispatch {
  /** What the launch computes, e.g. "layers.3.o_proj". */
  label: string;
  /** The specialised pipeline. */
  pipeline: GPUComputePipeline;
  /** Params and buffers, bound once. */
  bindGroup: GPUBindGroup;
  /** Workgroup counts (x, y, z). */
  workgroups: [number, number, number];
}

/**
 * A buffer bound to a kernel: its name in messages, the buffer, its access, and how many 4-byte
 * words the launch touches (checked against the tensor's shape or the buffer's size).
 */
export type Bound = [name: string, buffer: Tensor | GPUBuffer, access: Access, words: number];

/** A kernel launch to build: source, specialisation constants, params and bound buffers. */
export interface KernelCall {
  /** Kernel name, used as the pipeline cache key together with `constants`. */
  kernel: string;
  /** WGSL source of the kernel. */
  code: string;
  /** WGSL `override` values. Booleans are passed as 0/1. */
  constants?: Record<string, number | boolean>;
  /** Uniform params, u32 words in the order of the kernel's `Params` struct (f32 via {@link f32bits}). */
  params: number[];
  /** Buffers for bindings 1.., in order. */
  bindings: Bound[];
  /** Workgroup counts. */
  workgroups: [number, number?, number?];
  /** What this launch computes, for error messages and profiles. */
  label: string;
}

const f32view = new Float32Array(1);
const u32view = new Uint32Array(f32view.buffer);
/** The bit pattern of an f32, to pass a float through u32 params. */
export function f32bits(v: number): number {
  f32view[0] = v;
  return u32view[0];
}

const MAX_WORKGROUPS = 65535;
/** Splits `n` workgroups into a 2-D grid within the per-dimension limit; kernels linearise it. */
export function grid(n: number): [number, number] {
  return n <= MAX_WORKGROUPS
    ? [Math.max(1, n), 1]
    : [MAX_WORKGROUPS, Math.ceil(n / MAX_WORKGROUPS)];
}

function isTensor(b: Tensor | GPUBuffer): b is Tensor {
  return "shape" in b && "buffer" in b;
}

/** Throws a {@link ShapeError} if `b` holds fewer than `words` 4-byte words. */
export function checkSize(label: string, name: string, b: Tensor | GPUBuffer, words: number): void {
  if (isTensor(b)) {
    const n = numel(b);
    if (n < words) {
      const unit = b.dtype === "u32" ? "u32 words" : "floats";
      throw new ShapeError(`${label}: ${name} holds ${n} ${unit} ([${b.shape}]), needs ${words}`);
    }
  } else if (b.size < words * 4) {
    throw new ShapeError(`${label}: ${name} holds ${b.size} bytes, needs ${words * 4}`);
  }
}

/**
 * Builds the pipeline (cached by the Gpu) and a bind group with its own uniform buffer, owned by
 * `arena`. Every buffer is checked against the words the launch touches first.
 */
export function makeDispatch(arena: Arena, call: KernelCall): Dispatch {
  const gpu = arena.gpu;
  for (const [name, b, , words] of call.bindings) checkSize(call.label, name, b, words);
  const constants: Record<string, number> = {};
  for (const [k, v] of Object.entries(call.constants ?? {})) constants[k] = Number(v);
  const access = call.bindings.map(([, , a]) => a);
  const pipeline = gpu.pipeline(call.kernel, call.code, access, constants);
  const params = arena.uniform(`${call.label} params`, new Uint32Array(call.params));
  const bindGroup = gpu.device.createBindGroup({
    label: call.label,
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: params } },
      ...call.bindings.map(([, b], i) => ({
        binding: i + 1,
        resource: { buffer: isTensor(b) ? b.buffer : b },
      })),
    ],
  });
  const [x, y = 1, z = 1] = call.workgroups;
  return { label: call.label, pipeline, bindGroup, workgroups: [x, y, z] };
}

/** Encodes dispatches into an open compute pass. */
export function encode(pass: GPUComputePassEncoder, dispatches: readonly Dispatch[]): void {
  for (const d of dispatches) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  }
}

/** Submits dispatches in one compute pass, then surfaces any GPU error. */
export function run(gpu: Gpu, dispatches: readonly Dispatch[], where: string): void {
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encode(pass, dispatches);
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
  gpu.check(where);
}

/**
 * Storage types of weight matrices: f32, f16 (packed in pairs), or quantized in blocks of 32
 * weights along a row with an f16 scale each: q8 (int8, GGUF's Q8_0 rule) and q4 (4-bit,
 * GGUF's Q4_0 rule); see kernels/quantize.wgsl for the layout.
 */
export type WeightDType = "f32" | "f16" | "q8" | "q4";

/** Whether matrices of this type are quantized (q8, q4). */
export function isQuantized(dtype: WeightDType): dtype is "q8" | "q4" {
  return dtype === "q8" || dtype === "q4";
}

/** Weights per quantization block. */
export const QUANT_BLOCK = 32;

/**
 * A quantized part's layout in words: `values` words per row, then the scales from `scaleBase`,
 * `scaleStride` words per row (rows = the part's rows, both halves of a gated part).
 */
export function quantLayout(
  dtype: "q8" | "q4",
  rows: number,
  cols: number,
): { values: number; scaleBase: number; scaleStride: number; words: number } {
  const values = dtype === "q8" ? cols / 4 : cols / 8;
  const scaleStride = Math.ceil(cols / QUANT_BLOCK / 2);
  const scaleBase = rows * values;
  return { values, scaleBase, scaleStride, words: scaleBase + rows * scaleStride };
}

/**
 * One buffer of a weight matrix: output rows [start, start + outputs) (for a gated matrix, the
 * gate rows then the up rows of that range), row-major over `cols`.
 */
export interface MatrixPart {
  /** The storage buffer. */
  buffer: GPUBuffer;
  /** First output row held. */
  start: number;
  /** Output rows held. */
  outputs: number;
}

/**
 * A weight matrix on the GPU in HF Linear layout ([out, in], row-major), split into parts when
 * it exceeds the device's storage-binding limit; launches over it emit one dispatch per part.
 */
export interface Matrix {
  /** Output features N (a gated matrix has N gate and N up rows). */
  outputs: number;
  /** Input features K. */
  cols: number;
  /** Storage type: f16 is packed in pairs. */
  dtype: WeightDType;
  /** Gate and up projections stacked (SwiGLU), part by part. */
  gated: boolean;
  /** The buffers, in output order. */
  parts: MatrixPart[];
}

/** Words (4 bytes) of one part of a matrix. */
export function partWords(m: Matrix, p: MatrixPart): number {
  const rows = p.outputs * (m.gated ? 2 : 1);
  if (isQuantized(m.dtype)) return quantLayout(m.dtype, rows, m.cols).words;
  const n = rows * m.cols;
  return m.dtype === "f16" ? Math.ceil(n / 2) : n;
}

/** The `done` flag of a launch: word 0 nonzero makes it exit at once (default: never done). */
export function doneFlag(gpu: Gpu, done: GPUBuffer | undefined): Bound {
  return ["done", done ?? gpu.notDone, "read", 1];
}

/**
 * Device limits the kernels need beyond WebGPU's defaults: argmax runs 1024 threads per
 * workgroup; gemv keeps 4096 partial sums plus 8 norms in workgroup memory; quantized gemv binds 12
 * storage buffers (weights, scales, x, norm, bias, residual, y, and for its RoPE epilogue
 * positions, the RoPE table and the two caches, besides the done flag).
 */
export const KERNEL_LIMITS = {
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupStorageSize: 4096 * 4 + 8 * 4,
  maxStorageBuffersPerShaderStage: 12,
} as const;
