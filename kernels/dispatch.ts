/**
 * What every kernel launcher shares: a dispatch record built once (pipeline, bind group,
 * workgroup counts) and replayed into a compute pass each step.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import stateHeader from "./state.wgsl" with { type: "text" };

/** How a kernel binds a buffer: read-only or read-write storage. Binding 0 is always the uniform params. */
export type Access = "read" | "write";

/**
 * One recorded kernel launch; encoding it is setPipeline + setBindGroup + dispatch. Programs
 * (a decode step, a prefill chunk) are arrays of these, built once and replayed.
 *
 * @example
 * ```ts
 * import type { Dispatch } from "@ahead/mtp";
 * const describe = (program: Dispatch[]) => program.map((d) => d.label).join("\n");
 * ```
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

/** A kernel launch to build: source, specialisation constants, params and bound buffers. */
export interface KernelCall {
  /** Kernel name, used as the pipeline cache key together with `constants`. */
  kernel: string;
  /** WGSL source of the kernel (the state header is prepended). */
  code: string;
  /** WGSL `override` values. Booleans are passed as 0/1. */
  constants?: Record<string, number | boolean>;
  /** Uniform params, u32 words in the order of the kernel's `Params` struct (f32 via {@link f32bits}). */
  params: number[];
  /** Buffers for bindings 1.., with their access. */
  buffers: [GPUBuffer, Access][];
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

/** Builds the pipeline (cached by the Gpu) and a bind group with its own uniform buffer. */
export function makeDispatch(gpu: Gpu, call: KernelCall): Dispatch {
  const constants: Record<string, number> = {};
  for (const [k, v] of Object.entries(call.constants ?? {})) constants[k] = Number(v);
  const access = call.buffers.map(([, a]) => a);
  const pipeline = gpu.pipeline(call.kernel, stateHeader + call.code, access, constants);
  const params = gpu.uniform(`${call.label} params`, new Uint32Array(call.params));
  const bindGroup = gpu.device.createBindGroup({
    label: call.label,
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: params } },
      ...call.buffers.map(([buffer], i) => ({ binding: i + 1, resource: { buffer } })),
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
 * A weight matrix on the GPU: `rows` x `cols`, row-major (HF Linear layout: [out, in]).
 *
 * @example
 * ```ts
 * import type { Matrix } from "@ahead/mtp";
 * const bytes = (m: Matrix) => m.rows * m.cols * (m.f16 ? 2 : 4);
 * ```
 */
export interface Matrix {
  /** The storage buffer. */
  buffer: GPUBuffer;
  /** Output features. */
  rows: number;
  /** Input features. */
  cols: number;
  /** Stored as f16 (packed in pairs) rather than f32. */
  f16: boolean;
}
