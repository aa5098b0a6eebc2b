/**
 * A model on the GPU: its configuration, the trunk's weights and its heads' weights, in an arena
 * it owns. {@link createModel} gives it seeded random weights; loaders fill an
 * {@link allocateModel} tensor by tensor.
 * @module
 */
import type { Arena } from "../gpu/arena.ts";
import { createGpu, type Gpu } from "../gpu/device.ts";
import { InvalidInputError, ModelStateError } from "../gpu/errors.ts";
import { KERNEL_LIMITS } from "../kernels/dispatch.ts";
import { MAX_FUTURE } from "../kernels/state.ts";
import type { ModelConfig, ModelConfigInput } from "../model/config.ts";
import {
  type Placement,
  randomTensors,
  readQuantized,
  type TensorBytes,
  type TensorData,
  type TrunkWeights,
  uploadTensor,
  WeightAllocator,
} from "../model/weights.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import type { HeadKind } from "./kind.ts";
import { headKind, parseConfig, tensorShapes } from "./registry.ts";

/** Options of {@link allocateModel} and {@link createModel}. */
export interface ModelOptions {
  /** A WebGPU device to use instead of requesting one. The model does not destroy it. */
  device?: GPUDevice;
  /**
   * Largest buffer a weight matrix may take before it is split into parts by rows (default:
   * the device's storage-binding limit). Smaller values exercise the split path in tests.
   */
  maxBindingBytes?: number;
}

/** Options of {@link createModel}. */
export interface CreateModelOptions extends ModelOptions {
  /** Seed of the random initialisation (default 0). The same seed gives the same weights. */
  seed?: number;
  /** Called after each tensor is initialised, with bytes done and bytes in all. */
  onProgress?: (done: number, total: number) => void;
}

/** Prompt rows the prefill processes per launch (decode/ reads it to size its programs). */
export const PREFILL_CHUNK = 64;

/** Bytes of the largest activation buffer a generation of this model binds. */
function largestActivation(c: ModelConfig): number {
  const capacity = c.maxSeqLen + MAX_FUTURE;
  return 4 * Math.max(
    capacity * c.nKvHeads * c.headDim, // one layer's K (or V) cache
    MAX_FUTURE * c.vocabSize, // the logits of a verify block
    PREFILL_CHUNK * 2 * c.dFF, // a prefill chunk's gate and up projections
    capacity,
  );
}

/** A transformer trunk with `nFuture` output heads, on the GPU; free it with `dispose()`. */
export class Model {
  /** The validated configuration. */
  readonly config: ModelConfig;
  /** The device, pipelines and arenas. */
  readonly gpu: Gpu;
  /** The kind of heads 2..nFuture. */
  readonly kind: HeadKind;
  /** The trunk's weights (embedding, layers, final norm, unembedding). */
  readonly trunk: TrunkWeights;
  /** Heads 2..nFuture's weights, in the form their kind allocated. */
  readonly heads: unknown;
  /** Checkpoint tensor name -> where it lives on the GPU. */
  readonly placements: ReadonlyMap<string, Placement>;
  /**
   * The model's tokenizer: `loadModel` sets it from the checkpoint's tokenizer.json; set it
   * yourself for a model built another way. String prompts and text output need one.
   */
  tokenizer: Tokenizer | null = null;
  /**
   * Token ids that end a generation by default (the checkpoint's EOS ids from config.json,
   * generation_config.json and the tokenizer); `loadModel` sets them.
   */
  eosIds: readonly number[] = [];
  readonly #arena: Arena;
  #busy = false;

  /** Allocates zeroed weights of `config` on `gpu`, after checking the device's limits. */
  constructor(config: ModelConfig, gpu: Gpu, o: { maxBindingBytes?: number } = {}) {
    const limit = gpu.device.limits.maxStorageBufferBindingSize;
    const activation = largestActivation(config);
    gpu.requireLimits({
      ...KERNEL_LIMITS,
      maxStorageBufferBindingSize: activation,
      maxBufferSize: activation,
    }, `this model (maxSeqLen ${config.maxSeqLen}, vocabSize ${config.vocabSize})`);
    this.config = config;
    this.gpu = gpu;
    this.kind = headKind(config);
    this.#arena = gpu.arena("weights");
    const alloc = new WeightAllocator(this.#arena, {
      dtype: config.dtype,
      maxBindingBytes: Math.min(o.maxBindingBytes ?? limit, limit),
    });
    this.trunk = alloc.trunk(config);
    this.heads = this.kind.allocate(alloc, config);
    this.placements = alloc.placements;
  }

  /** The adapter the model runs on. */
  get adapterName(): string {
    return this.gpu.adapterName;
  }

  /** Number of live GPU buffers: weights plus those of a running generation. */
  get liveBuffers(): number {
    return this.gpu.liveBuffers;
  }

  /** Whether `dispose()` was called. */
  get disposed(): boolean {
    return this.gpu.disposed;
  }

  /** Every tensor of the model under its checkpoint name, with its shape. */
  tensorShapes(): [string, number[]][] {
    return tensorShapes(this.config);
  }

  /**
   * Copies one checkpoint tensor into place. `data` is f32 or f16 values, or raw bytes with
   * their type (`{ dtype: "bf16", bytes }`), converted on the fly to the model's storage type.
   *
   * @throws {InvalidInputError} for a name the model does not have; {@link ShapeError} when the
   * data does not fit the tensor's shape.
   */
  setTensor(name: string, data: TensorData): void {
    this.assertUsable();
    const p = this.placements.get(name);
    if (!p) {
      throw new InvalidInputError(
        `unknown tensor ${name}: model.tensorShapes() lists the names this model has`,
      );
    }
    uploadTensor(this.#arena, name, p, data);
  }

  /**
   * Reads one tensor back from the GPU in its storage type (f16 for the matrices of an f16
   * model, values and scales for those of a q8 or q4 model, f32 otherwise): what a checkpoint
   * writer saves. A host sync per segment.
   */
  async getTensor(name: string): Promise<TensorBytes> {
    this.assertUsable();
    const p = this.placements.get(name);
    if (!p) {
      throw new InvalidInputError(
        `unknown tensor ${name}: model.tensorShapes() lists the names this model has`,
      );
    }
    if (p.dtype === "q8" || p.dtype === "q4") {
      return await readQuantized(p, (b, size, offset) => this.gpu.read(b, size, offset));
    }
    const size = p.dtype === "f16" && p.shape.length === 2 ? 2 : 4;
    const cols = p.shape.length === 2 ? p.shape[1] : p.shape[0];
    const bytes = new Uint8Array(p.shape.reduce((a, b) => a * b, 1) * size);
    for (const s of p.segments) {
      const n = s.rows * cols * size;
      // Copies must be 4-byte aligned: read the enclosing words and cut the segment out.
      const start = s.offset * size, lo = Math.floor(start / 4) * 4;
      const hi = Math.ceil((start + n) / 4) * 4;
      const words = new Uint8Array(await this.gpu.read(s.buffer, hi - lo, lo));
      bytes.set(words.subarray(start - lo, start - lo + n), s.row * cols * size);
    }
    return { dtype: size === 2 ? "f16" : "f32", bytes };
  }

  /** Throws {@link ModelStateError} if the model was disposed. */
  assertUsable(): void {
    if (this.disposed) {
      throw new ModelStateError("the model was disposed: create a new one with createModel()");
    }
  }

  /** Marks the model busy for one generation at a time; returns the release function. */
  acquire(): () => void {
    this.assertUsable();
    if (this.#busy) {
      throw new ModelStateError(
        "another generation is running on this model: consume or abort it first",
      );
    }
    this.#busy = true;
    return () => {
      this.#busy = false;
    };
  }

  /**
   * Frees every GPU buffer of the model (and its device, if the model requested it). A
   * generation running on it ends with a {@link ModelStateError}.
   */
  dispose(): void {
    this.gpu.dispose();
  }
}

/**
 * Creates a model with zeroed weights, to be filled with `model.setTensor` (what checkpoint
 * loaders do).
 *
 * @throws {ConfigError} for invalid configuration values; {@link GpuError} when the device's
 * limits are too low; {@link WebGpuUnavailableError} when there is no WebGPU adapter.
 */
export async function allocateModel(
  config: ModelConfigInput,
  options: ModelOptions = {},
): Promise<Model> {
  const c = parseConfig(config);
  const gpu = await createGpu({ device: options.device });
  try {
    return new Model(c, gpu, options);
  } catch (e) {
    gpu.dispose();
    throw e;
  }
}

/**
 * Creates a model with seeded random weights on the GPU.
 *
 * @throws {ConfigError} for invalid configuration values, naming the field.
 * @throws {WebGpuUnavailableError} when there is no WebGPU adapter.
 * @example
 * ```ts
 * import { complete, createModel } from "@ahead/mtp";
 * const model = await createModel(
 *   { vocabSize: 256, dModel: 64, nLayers: 2, nHeads: 4, dFF: 128, maxSeqLen: 128, nFuture: 4 },
 *   { seed: 1 },
 * );
 * const { tokens, stats } = await complete(model, [1, 2, 3], { maxTokens: 16, mode: "speculative" });
 * console.log(tokens, stats.tokensPerStep);
 * model.dispose();
 * ```
 */
export async function createModel(
  config: ModelConfigInput,
  options: CreateModelOptions = {},
): Promise<Model> {
  const model = await allocateModel(config, options);
  try {
    const c = model.config;
    const shapes = model.tensorShapes();
    const perValue = { f32: 4, f16: 2, q8: 1, q4: 0.5 };
    const bytes = (name: string, n: number) => n * perValue[model.placements.get(name)!.dtype];
    const total = shapes.reduce(
      (s, [name, shape]) => s + bytes(name, shape.reduce((a, b) => a * b, 1)),
      0,
    );
    let done = 0;
    for (
      const [name, data] of randomTensors(shapes, {
        seed: options.seed ?? 0,
        f16: c.dtype === "f16",
      })
    ) {
      model.setTensor(name, data);
      done += bytes(name, data.length);
      options.onProgress?.(done, total);
    }
    await model.gpu.device.queue.onSubmittedWorkDone();
    model.gpu.check("weight upload");
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}
