import assert from "node:assert/strict";
// Shared test helpers: one device per test file, seeded random data, poisoned outputs.
import { createGpu } from "../gpu/device.ts";
import type { Arena, Tensor } from "../gpu/arena.ts";
import type { Matrix } from "../kernels/dispatch.ts";
import { S } from "../kernels/state.ts";
import type { ModelConfigInput } from "../model/config.ts";
import { preset } from "../model/presets.ts";
import { randomTensors } from "../model/weights.ts";
import { quantizeRef, relativeError } from "../kernels/reference.ts";
import type { Model } from "../heads/model.ts";
import type { ModelConfig } from "../model/config.ts";
import { referenceForward } from "../heads/reference.ts";

let shared: Promise<Arena> | null = null;
/** The test file's arena on its device (created once). */
export function testArena(): Promise<Arena> {
  shared ??= createGpu().then((gpu) => gpu.arena("test"));
  return shared;
}

/** A seeded generator of uniform values in [lo, hi). */
export function rng(seed: number): (lo?: number, hi?: number) => number {
  let a = seed >>> 0;
  return (lo = -1, hi = 1) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  };
}

/** n random values in [-1, 1). */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * scale);
}

/** An f32 tensor holding `data` (shape [data.length] unless given). */
export function f32(a: Arena, data: Float32Array, shape: number[] = [data.length]): Tensor {
  return a.tensor("f32", shape, "f32", data);
}

/** A u32 tensor holding `data`. */
export function u32(a: Arena, data: ArrayLike<number>): Tensor {
  return a.tensor("u32", [data.length], "u32", Uint32Array.from(data));
}

/** A tensor of n f32 filled with NaN, so elements a kernel fails to write show up. */
export function poisoned(a: Arena, n: number): Tensor {
  return a.tensor("poisoned", [n], "f32", new Float32Array(n).fill(NaN));
}

/** A decode-state buffer: all zero (not done) unless words are given. */
export function stateTensor(a: Arena, words: Record<number, number> = {}): Tensor {
  const s = new Uint32Array(S.WORDS);
  for (const [i, v] of Object.entries(words)) s[Number(i)] = v;
  return a.tensor("state", [S.WORDS], "u32", s);
}

/**
 * Uploads a random weight matrix as f32 or f16 (gate rows then up rows when `gated`), split
 * into parts of at most `partRows` output rows; returns it and the values the GPU holds.
 */
export function matrix(
  a: Arena,
  rows: number,
  cols: number,
  o: { seed: number; f16: boolean; gated?: boolean; partRows?: number },
): { m: Matrix; values: Float32Array } {
  const factor = o.gated ? 2 : 1;
  const outputs = rows / factor;
  const values = randomArray(rows * cols, o.seed, 1 / Math.sqrt(cols));
  if (o.f16) values.set(new Float16Array(values));
  const per = o.partRows ?? outputs;
  const parts = [];
  for (let start = 0; start < outputs; start += per) {
    const n = Math.min(per, outputs - start);
    const data = new Float32Array(n * factor * cols);
    data.set(values.subarray(start * cols, (start + n) * cols));
    if (o.gated) {
      data.set(values.subarray((outputs + start) * cols, (outputs + start + n) * cols), n * cols);
    }
    parts.push({
      buffer: a.storage("w", o.f16 ? new Float16Array(data) : data),
      start,
      outputs: n,
    });
  }
  return { m: { outputs, cols, dtype: o.f16 ? "f16" : "f32", gated: !!o.gated, parts }, values };
}

/**
 * A random q8 or q4 matrix ([rows, cols], gate rows then up rows when gated), quantized on the
 * CPU (quantizeRef) and packed into parts in the GPU layout written out here independently of
 * the loader: values row by row, then each row's f16 scales padded to whole words. `values` are
 * the dequantized weights, q d, for the reference.
 */
export function qmatrix(
  a: Arena,
  rows: number,
  cols: number,
  o: { seed: number; dtype: "q8" | "q4"; gated?: boolean; partRows?: number },
): { m: Matrix; values: Float32Array } {
  const factor = o.gated ? 2 : 1;
  const outputs = rows / factor;
  const q = quantizeRef(randomArray(rows * cols, o.seed, 1 / Math.sqrt(cols)), cols, o.dtype);
  const scales = new Float16Array(q.scales.buffer);
  const values = Float32Array.from(q.codes, (c, i) => c * scales[Math.floor(i / 32)]);
  const rowBytes = o.dtype === "q8" ? cols : cols / 2;
  const blocks = cols / 32, stride = Math.ceil(blocks / 2) * 4;
  const per = o.partRows ?? outputs;
  const parts = [];
  for (let start = 0; start < outputs; start += per) {
    const n = Math.min(per, outputs - start);
    const src = [...Array(n).keys()].map((r) => start + r);
    if (o.gated) src.push(...src.map((r) => outputs + r));
    const data = new Uint8Array(src.length * (rowBytes + stride));
    src.forEach((r, i) => {
      data.set(q.bytes.subarray(r * rowBytes, (r + 1) * rowBytes), i * rowBytes);
      data.set(
        q.scales.subarray(r * blocks * 2, (r + 1) * blocks * 2),
        src.length * rowBytes + i * stride,
      );
    });
    parts.push({ buffer: a.storage("w", data), start, outputs: n });
  }
  return { m: { outputs, cols, dtype: o.dtype, gated: !!o.gated, parts }, values };
}

/**
 * Asserts every element of `gpu` was written (finite) and that its relative error against `ref`
 * is below `tol`.
 */
export function assertClose(
  gpu: ArrayLike<number>,
  ref: ArrayLike<number>,
  tol: number,
  what: string,
): void {
  for (let i = 0; i < gpu.length; i++) {
    assert.ok(Number.isFinite(gpu[i]), `${what}: element ${i} is ${gpu[i]} (not written?)`);
  }
  const err = relativeError(gpu, ref);
  assert.ok(err < tol, `${what}: relative error ${err} >= ${tol}`);
}

/** Reads n f32 back. */
export async function readF32(a: Arena, t: Tensor | GPUBuffer, n: number): Promise<Float32Array> {
  const b = "buffer" in t ? t.buffer : t;
  return new Float32Array(await a.gpu.read(b, Math.ceil(n * 4 / 16) * 16), 0, n);
}

/** Reads n u32 back. */
export async function readU32(a: Arena, t: Tensor | GPUBuffer, n: number): Promise<Uint32Array> {
  const b = "buffer" in t ? t.buffer : t;
  return new Uint32Array(await a.gpu.read(b, Math.ceil(n * 4 / 16) * 16), 0, n);
}

/** The test suite's model: odd sizes (multiples of no workgroup size), nKvHeads < nHeads. */
export const tiny = (o: Partial<ModelConfigInput> = {}): ModelConfigInput => preset("tiny-odd", o);

/**
 * Llama 3 RoPE scaling sized for tiny-odd (headDim 8, theta 1e4: wavelengths 6.3, 63, 628 and
 * 6283): it keeps the first frequency, blends the second and divides the last two by 8.
 */
export const TINY_LLAMA3: ModelConfigInput["ropeScaling"] = {
  type: "llama3",
  factor: 8,
  lowFreqFactor: 2,
  highFreqFactor: 16,
  originalMaxPositions: 200,
};

/** The Hugging Face trunk features, one at a time, for tests that run each. */
export const FEATURES: Record<string, Partial<ModelConfigInput>> = {
  "q/k/v and o biases": { qkvBias: true, oBias: true },
  "q/k norms": { qkNorm: true },
  "linear RoPE scaling": { ropeScaling: { type: "linear", factor: 4 } },
  "llama3 RoPE scaling": { ropeScaling: TINY_LLAMA3 },
};

/** Every trunk feature at once (Qwen-style biases and norms, Llama 3 RoPE). */
export const ALL_FEATURES: Partial<ModelConfigInput> = {
  qkvBias: true,
  oBias: true,
  qkNorm: true,
  ropeScaling: TINY_LLAMA3,
};

/** n random token ids below vocab. */
export function randomTokens(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r(0, vocab)));
}

/** The seeded random tensors `createModel(config, { seed })` uploaded, by name. */
export function tensorsOf(model: Model, seed: number): Map<string, Float32Array> {
  const f16 = model.config.dtype === "f16";
  return new Map([...randomTensors(model.tensorShapes(), { seed, f16 })].map(([n, d]) => [n, d]));
}

/** A device of our own whose buffers are tracked: `live` holds those not destroyed yet. */
export interface WatchedDevice {
  device: GPUDevice;
  /** Buffers created and not destroyed, with their labels. */
  live: Map<GPUBuffer, string>;
  /** Validation and out-of-memory errors the device reported. */
  errors: string[];
  /** uncapturederror listeners added and not removed, other than ours. */
  listeners: () => number;
}

/**
 * Requests a device with the limits the model needs (what gpu/device.ts createGpu requests) and
 * wraps its `createBuffer` on the instance, and each buffer's `destroy`, to count buffers.
 */
export async function watchedDevice(): Promise<WatchedDevice> {
  const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: (["shader-f16", "timestamp-query"] as GPUFeatureName[])
      .filter((f) => adapter.features.has(f)),
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    },
  });
  const live = new Map<GPUBuffer, string>();
  const errors: string[] = [];
  const create = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor) => {
    const b = create(descriptor);
    live.set(b, descriptor.label ?? "(no label)");
    const destroy = b.destroy.bind(b);
    b.destroy = () => {
      live.delete(b);
      destroy();
    };
    return b;
  };
  // Listeners others add (each model's Gpu adds one), so a test can see whether they go away.
  const handlers = new Set<unknown>();
  const add = device.addEventListener.bind(device);
  const remove = device.removeEventListener.bind(device);
  device.addEventListener = ((type: string, fn: unknown, o?: unknown) => {
    if (type === "uncapturederror") handlers.add(fn);
    // deno-lint-ignore no-explicit-any
    add(type as any, fn as any, o as any);
  }) as typeof device.addEventListener;
  device.removeEventListener = ((type: string, fn: unknown, o?: unknown) => {
    if (type === "uncapturederror") handlers.delete(fn);
    // deno-lint-ignore no-explicit-any
    remove(type as any, fn as any, o as any);
  }) as typeof device.removeEventListener;
  add("uncapturederror", (e) => {
    errors.push((e as GPUUncapturedErrorEvent).error.message);
  });
  return { device, live, errors, listeners: () => handlers.size };
}

/**
 * The f64 reference's training loss over a batch: the sum over heads of the mean cross-entropy,
 * head j of row r against targets[b][j][r]. Each sequence runs extended by the stream's next
 * tokens (the targets of its last row): sequential MTP modules read the true token t+k at row t,
 * which for the last rows lies past the sequence; for every other head the extension changes
 * nothing (attention is causal).
 */
export function referenceLoss(
  m: { config: ModelConfig },
  t: Map<string, Float32Array>,
  seqs: number[][],
  targets: number[][][],
): number {
  const v = m.config.vocabSize, nh = m.config.nFuture;
  let loss = 0, rows = 0;
  seqs.forEach((seq, b) => {
    const T = seq.length;
    const ext = [...seq, ...Array.from({ length: nh }, (_, i) => targets[b][i][T - 1])];
    referenceForward(m.config, t, ext).forEach((logits, j) => {
      for (let r = 0; r < T; r++) {
        const row = logits.subarray(r * v, (r + 1) * v);
        const max = Math.max(...row);
        let s = 0;
        for (const x of row) s += Math.exp(x - max);
        loss += max + Math.log(s) - row[targets[b][j][r]];
      }
    });
    rows += T;
  });
  return loss / rows;
}

/** Runs examples/train.ts with `args`; its exit code and stderr. */
export async function trainCli(...args: string[]): Promise<{ code: number; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-webgpu",
      new URL("../examples/train.ts", import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, err: new TextDecoder().decode(r.stderr) };
}

/**
 * A Hugging Face folder `dir/hf` holding a parity fixture's trunk (transformers' save_pretrained)
 * and, with `tokenizer`, the byte-level BPE fixture's tokenizer files; returns its path.
 */
export async function trunkFolder(dir: string, o: { tokenizer: boolean }): Promise<string> {
  const fixtures = new URL("./fixtures/", import.meta.url).pathname;
  const hf = `${dir}/hf`;
  await Deno.mkdir(hf);
  for (const f of ["config.json", "model.safetensors"]) {
    await Deno.copyFile(`${fixtures}parity/llama-gqa-llama3-rope-f32/${f}`, `${hf}/${f}`);
  }
  if (o.tokenizer) {
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${fixtures}tokenizers/byte_level_bpe/${f}`, `${hf}/${f}`);
    }
  }
  return hf;
}
