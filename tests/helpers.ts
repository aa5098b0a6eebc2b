// Shared test helpers: one device per test file, seeded random data, poisoned outputs.
import { createGpu, type Gpu } from "../gpu/device.ts";
import { STATE_WORDS } from "../decode/state.ts";
import type { Matrix } from "../kernels/dispatch.ts";
import type { ModelConfigInput } from "../model/config.ts";

let shared: Promise<Gpu> | null = null;
/** The test file's device (created once). */
export function testGpu(): Promise<Gpu> {
  shared ??= createGpu();
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

/** A buffer of n f32 filled with NaN, so elements a kernel fails to write show up. */
export function poisoned(gpu: Gpu, n: number): GPUBuffer {
  return gpu.storage("poisoned", new Float32Array(n).fill(NaN));
}

/** A state buffer: all zero (position 0, not done) unless words are given. */
export function stateBuffer(gpu: Gpu, words: Record<number, number> = {}): GPUBuffer {
  const s = new Uint32Array(STATE_WORDS);
  for (const [i, v] of Object.entries(words)) s[Number(i)] = v;
  return gpu.storage("state", s);
}

/** Uploads a weight matrix as f32 or f16; returns it and the values the GPU holds. */
export function matrix(
  gpu: Gpu,
  rows: number,
  cols: number,
  seed: number,
  f16: boolean,
): { m: Matrix; values: Float32Array } {
  const values = randomArray(rows * cols, seed, 1 / Math.sqrt(cols));
  if (f16) values.set(new Float16Array(values));
  const data = f16 ? new Float16Array(values) : values;
  return { m: { buffer: gpu.storage("w", data), rows, cols, f16 }, values };
}

/** Reads n f32 back. */
export async function readF32(gpu: Gpu, b: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await gpu.read(b, Math.ceil(n * 4 / 16) * 16), 0, n);
}

/** Reads n u32 back. */
export async function readU32(gpu: Gpu, b: GPUBuffer, n: number): Promise<Uint32Array> {
  return new Uint32Array(await gpu.read(b, Math.ceil(n * 4 / 16) * 16), 0, n);
}

/** A tiny model of odd shapes: sizes are not multiples of any workgroup size, nKvHeads < nHeads. */
export const tiny = (o: Partial<ModelConfigInput> = {}): ModelConfigInput => ({
  vocabSize: 67,
  dModel: 24,
  nLayers: 2,
  nHeads: 3,
  nKvHeads: 1,
  headDim: 8,
  dFF: 40,
  maxSeqLen: 96,
  nFuture: 3,
  ...o,
});

/** n random token ids below vocab. */
export function randomTokens(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r(0, vocab)));
}
