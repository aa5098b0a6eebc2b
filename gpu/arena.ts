/**
 * Arenas own GPU buffers: a model owns one for its weights, a generation one for its state,
 * caches and programs. `dispose()` frees everything an arena made, and nothing else.
 * @module
 */
import type { Gpu } from "./device.ts";
import { ModelStateError, ShapeError } from "./errors.ts";

/** Element types of activations and index buffers. */
export type DType = "f32" | "u32";

/**
 * A buffer with a shape: what kernel launchers check their inputs against, so a size mistake is
 * an error when a program is built rather than silently wrong numbers at run time.
 */
export interface Tensor {
  /** The storage buffer (its size may be rounded up; `shape` is what it holds). */
  readonly buffer: GPUBuffer;
  /** Row-major shape, e.g. [rows, dModel]. */
  readonly shape: readonly number[];
  /** Element type (4 bytes each). */
  readonly dtype: DType;
  /** Name for error messages and GPU debuggers. */
  readonly label: string;
}

/** Number of elements of a tensor. */
export function numel(t: Tensor): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

/** Owns the buffers it creates; `dispose()` frees them all. Create one with `gpu.arena(label)`. */
export class Arena {
  /** What the arena belongs to, e.g. "weights" or "generation". */
  readonly label: string;
  /** The device wrapper it allocates on (pipelines, error checks). */
  readonly gpu: Gpu;
  readonly #buffers = new Set<GPUBuffer>();
  readonly #onDispose: (a: Arena) => void;
  #disposed = false;

  /** Use `gpu.arena(label)`; `onDispose` unregisters it from its owner. */
  constructor(gpu: Gpu, label: string, onDispose: (a: Arena) => void) {
    this.gpu = gpu;
    this.label = label;
    this.#onDispose = onDispose;
  }

  /** Whether `dispose()` ran. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Buffers alive in this arena. */
  get liveBuffers(): number {
    return this.#buffers.size;
  }

  /** Creates a buffer this arena owns. Sizes are rounded up to 16 bytes. */
  buffer(label: string, size: number, usage: number): GPUBuffer {
    if (this.#disposed) {
      throw new ModelStateError(`the ${this.label} buffers were freed: create the object anew`);
    }
    const b = this.gpu.device.createBuffer({
      label,
      size: Math.max(16, Math.ceil(size / 16) * 16),
      usage,
    });
    this.#buffers.add(b);
    return b;
  }

  /** A storage buffer of `data` or of `data` zero bytes. */
  storage(label: string, data: ArrayBufferView | number, extraUsage = 0): GPUBuffer {
    const size = typeof data === "number" ? data : data.byteLength;
    const b = this.buffer(
      label,
      size,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
    );
    if (typeof data !== "number") this.write(b, data);
    return b;
  }

  /** A tensor of `shape`, zero-filled or holding `data`. */
  tensor(
    label: string,
    shape: readonly number[],
    dtype: DType = "f32",
    data?: ArrayBufferView,
  ): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data && data.byteLength !== n * 4) {
      throw new ShapeError(
        `tensor ${label}: ${data.byteLength} bytes of data for shape [${shape}]`,
      );
    }
    return { buffer: this.storage(label, data ?? n * 4), shape: [...shape], dtype, label };
  }

  /** A uniform buffer holding `data` (u32 words). */
  uniform(label: string, data: Uint32Array): GPUBuffer {
    const b = this.buffer(label, data.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.write(b, data);
    return b;
  }

  /** Queues a write of `data` into `buffer` at byte `offset`, padding to 4 bytes. */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    writeBuffer(this.gpu.device, buffer, data, offset);
  }

  /** Frees one buffer of this arena. */
  free(buffer: GPUBuffer): void {
    if (this.#buffers.delete(buffer)) buffer.destroy();
  }

  /** Frees every buffer of this arena; later allocations throw. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.#buffers) b.destroy();
    this.#buffers.clear();
    this.#onDispose(this);
  }
}

/** `queue.writeBuffer` for any view, padded to the 4-byte multiple WebGPU requires. */
export function writeBuffer(
  device: GPUDevice,
  buffer: GPUBuffer,
  data: ArrayBufferView,
  offset = 0,
): void {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  if (bytes.byteLength % 4 === 0) {
    device.queue.writeBuffer(buffer, offset, bytes);
  } else {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    device.queue.writeBuffer(buffer, offset, padded);
  }
}
