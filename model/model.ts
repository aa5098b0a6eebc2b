/**
 * A model on the GPU: configuration, weights, and the device they live on.
 * @module
 */
import { createGpu, type Gpu } from "../gpu/device.ts";
import { ModelStateError } from "../gpu/errors.ts";
import { type ModelConfig, type ModelConfigInput, parseConfig } from "./config.ts";
import {
  allocateWeights,
  type Placement,
  randomTensors,
  uploadTensor,
  type Weights,
} from "./weights.ts";

/**
 * Options of {@link createModel}.
 *
 * @example
 * ```ts
 * import type { CreateModelOptions } from "@ahead/mtp";
 * const options: CreateModelOptions = {
 *   seed: 42,
 *   onProgress: (done, total) => console.log(`${Math.round((100 * done) / total)}%`),
 * };
 * ```
 */
export interface CreateModelOptions {
  /** Seed of the random initialisation (default 0). The same seed gives the same weights. */
  seed?: number;
  /** A WebGPU device to use instead of requesting one. The model does not destroy it. */
  device?: GPUDevice;
  /** Called after each tensor is initialised, with bytes done and bytes in all. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * A transformer trunk with `nFuture` output heads, on the GPU. Make one with {@link createModel};
 * free its GPU memory with `dispose()`.
 *
 * @example
 * ```ts
 * import { createModel } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, dFF: 64, maxSeqLen: 64 });
 * console.log(model.config.nFuture, model.adapterName);
 * model.dispose();
 * ```
 */
export class Model {
  /** The validated configuration. */
  readonly config: ModelConfig;
  /** The device and buffer registry. */
  readonly gpu: Gpu;
  /** GPU weights, fused where a decode step reads several together. */
  readonly weights: Weights;
  /** Checkpoint tensor name -> where it lives on the GPU. */
  readonly placements: ReadonlyMap<string, Placement>;
  #disposed = false;
  #busy = false;

  /** Allocates the weights of `config` on `gpu` (uninitialised: use {@link createModel}). */
  constructor(config: ModelConfig, gpu: Gpu) {
    this.config = config;
    this.gpu = gpu;
    const { weights, placements } = allocateWeights(gpu, config);
    this.weights = weights;
    this.placements = placements;
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
    return this.#disposed;
  }

  /** Copies one checkpoint tensor (f32 values) into place. */
  setTensor(name: string, data: Float32Array): void {
    this.assertUsable();
    const p = this.placements.get(name);
    if (!p) throw new RangeError(`unknown tensor ${name}; see tensorShapes(config) for the names`);
    uploadTensor(this.gpu, p, data);
  }

  /** Throws if the model was disposed. */
  assertUsable(): void {
    if (this.#disposed) {
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

  /** Frees every GPU buffer of the model (and its device, if the model requested it). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.gpu.dispose();
  }
}

/**
 * Creates a model with seeded random weights on the GPU.
 *
 * @throws {ConfigError} for invalid configuration values, naming the field.
 * @throws {WebGpuUnavailableError} when there is no WebGPU adapter.
 * @example
 * ```ts
 * import { createModel } from "@ahead/mtp";
 * const model = await createModel(
 *   { vocabSize: 128, dModel: 64, nLayers: 2, nHeads: 4, dFF: 128, maxSeqLen: 128, nFuture: 4, headKind: "medusa" },
 *   { seed: 1 },
 * );
 * model.dispose();
 * ```
 */
export async function createModel(
  config: ModelConfigInput,
  options: CreateModelOptions = {},
): Promise<Model> {
  const c = parseConfig(config);
  const gpu = await createGpu({ device: options.device });
  try {
    const model = new Model(c, gpu);
    let total = 0;
    for (const p of model.placements.values()) {
      total += p.shape.reduce((a, b) => a * b, 1) * (p.f16 ? 2 : 4);
    }
    let done = 0;
    for (const [name, data] of randomTensors(c, options.seed ?? 0)) {
      model.setTensor(name, data);
      done += data.length * (model.placements.get(name)!.f16 ? 2 : 4);
      options.onProgress?.(done, total);
    }
    await gpu.device.queue.onSubmittedWorkDone();
    gpu.check("weight upload");
    return model;
  } catch (e) {
    gpu.dispose();
    throw e;
  }
}
