/**
 * Adapter and device acquisition, GPU error capture, the pipeline cache and buffer tracking.
 * @module
 */
import { GpuError, WebGpuUnavailableError } from "./errors.ts";

/**
 * Options for {@link createGpu}.
 *
 * @example
 * ```ts
 * import { createGpu, type GpuOptions } from "@ahead/mtp";
 * const options: GpuOptions = { powerPreference: "low-power" };
 * (await createGpu(options)).dispose();
 * ```
 */
export interface GpuOptions {
  /** Use this device instead of requesting one; it must have been created with enough limits. */
  device?: GPUDevice;
  /** Passed to `requestAdapter`. Default "high-performance". */
  powerPreference?: GPUPowerPreference;
}

const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "timestamp-query"];

/**
 * A WebGPU device plus what the package keeps beside it: a pipeline cache keyed by readable
 * names, and a register of every buffer created through it so that `dispose()` frees them all.
 *
 * @example
 * ```ts
 * import { createGpu } from "@ahead/mtp";
 * const gpu = await createGpu();
 * console.log(gpu.adapterName, gpu.hasTimestamps);
 * gpu.dispose();
 * ```
 */
export class Gpu {
  /** The device all work runs on. */
  readonly device: GPUDevice;
  /** The adapter's description, e.g. "NVIDIA H200" or "llvmpipe (LLVM 15.0.6, 256 bits)". */
  readonly adapterName: string;
  /** Whether `timestamp-query` is enabled (kernel timing). */
  readonly hasTimestamps: boolean;
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly #modules = new Map<string, GPUShaderModule>();
  readonly #buffers = new Set<GPUBuffer>();
  #scope: Set<GPUBuffer> | null = null;
  readonly #ownsDevice: boolean;
  #firstError: GPUError | null = null;
  #lost: string | null = null;

  /** Wraps `device`; `ownsDevice` says whether `dispose()` destroys it. */
  constructor(device: GPUDevice, adapterName: string, ownsDevice: boolean) {
    this.device = device;
    this.adapterName = adapterName;
    this.hasTimestamps = device.features.has("timestamp-query");
    this.#ownsDevice = ownsDevice;
    device.addEventListener("uncapturederror", (e) => {
      this.#firstError ??= (e as GPUUncapturedErrorEvent).error;
    });
    device.lost.then((info) => {
      this.#lost = info.message || info.reason || "unknown reason";
    });
  }

  /**
   * Throws a {@link GpuError} if the device reported an error since the last check. Called
   * after every submit, so a validation error surfaces in the caller, not as a log line.
   */
  check(where: string): void {
    if (this.#lost !== null) {
      throw new GpuError(`GPU device lost during ${where}: ${this.#lost}`);
    }
    const err = this.#firstError;
    if (err !== null) {
      this.#firstError = null;
      throw new GpuError(`GPU error during ${where}: ${err.message}`);
    }
  }

  /**
   * Returns the compute pipeline for kernel `name` specialised with `constants`, building it the
   * first time. Binding 0 is a uniform buffer; bindings 1.. are storage buffers with the given
   * access. The layout is explicit, so a binding an override switches off is still accepted.
   */
  pipeline(
    name: string,
    code: string,
    access: readonly ("read" | "write")[],
    constants: Record<string, number> = {},
  ): GPUComputePipeline {
    const key = `${name}|${JSON.stringify(constants)}`;
    let p = this.#pipelines.get(key);
    if (p === undefined) {
      let module = this.#modules.get(name);
      if (module === undefined) {
        module = this.device.createShaderModule({ label: name, code });
        this.#modules.set(name, module);
      }
      const layout = this.device.createBindGroupLayout({
        label: name,
        entries: [
          { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
          ...access.map((a, i) => ({
            binding: i + 1,
            visibility: GPUShaderStage.COMPUTE,
            buffer: { type: a === "read" ? "read-only-storage" as const : "storage" as const },
          })),
        ],
      });
      p = this.device.createComputePipeline({
        label: key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: "main", constants },
      });
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /** Creates a buffer that `dispose()` will free. Sizes are rounded up to 16 bytes. */
  buffer(label: string, size: number, usage: number): GPUBuffer {
    const b = this.device.createBuffer({
      label,
      size: Math.max(16, Math.ceil(size / 16) * 16),
      usage,
    });
    this.#buffers.add(b);
    this.#scope?.add(b);
    return b;
  }

  /**
   * Runs `build` (synchronously) with every buffer it creates also recorded in `scope`, so that a
   * generation can free what it made with {@link freeAll} while the model's weights stay.
   */
  inScope<T>(scope: Set<GPUBuffer>, build: () => T): T {
    const outer = this.#scope;
    this.#scope = scope;
    try {
      return build();
    } finally {
      this.#scope = outer;
    }
  }

  /** Frees every buffer of `scope`. */
  freeAll(scope: Set<GPUBuffer>): void {
    for (const b of scope) this.free(b);
    scope.clear();
  }

  /** A storage buffer filled with `data`. */
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

  /** A uniform buffer holding `data` (u32 words). */
  uniform(label: string, data: Uint32Array): GPUBuffer {
    const b = this.buffer(label, data.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.write(b, data);
    return b;
  }

  /** Queues a write of `data` into `buffer` at byte `offset`, padding to 4 bytes. */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buffer, offset, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(buffer, offset, padded);
    }
  }

  /** Frees one buffer created through this object. */
  free(buffer: GPUBuffer): void {
    if (this.#buffers.delete(buffer)) buffer.destroy();
  }

  /** Number of live buffers created through this object (tests use it to find leaks). */
  get liveBuffers(): number {
    return this.#buffers.size;
  }

  /**
   * Reads `size` bytes of `buffer` back to the host. This is a host sync (>= 10 ms in Deno):
   * for tests, set-up and debugging, never inside the decode loop.
   */
  async read(buffer: GPUBuffer, size = buffer.size, offset = 0): Promise<ArrayBuffer> {
    const staging = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      this.check("read-back");
      return staging.getMappedRange().slice(0);
    } finally {
      staging.destroy();
    }
  }

  /** Frees every buffer created through this object, and the device if this object made it. */
  dispose(): void {
    for (const b of this.#buffers) b.destroy();
    this.#buffers.clear();
    this.#pipelines.clear();
    this.#modules.clear();
    if (this.#ownsDevice) this.device.destroy();
  }
}

/**
 * Acquires a WebGPU adapter and a device that requests the adapter's own limits for storage
 * bindings, buffer size and workgroup storage (WebGPU defaults are far smaller), and the
 * `shader-f16` and `timestamp-query` features when present.
 *
 * @throws {WebGpuUnavailableError} when `navigator.gpu` is missing or no adapter is found.
 * @example
 * ```ts
 * import { createGpu } from "@ahead/mtp";
 * const gpu = await createGpu({ powerPreference: "high-performance" });
 * console.log(gpu.device.limits.maxStorageBufferBindingSize);
 * gpu.dispose();
 * ```
 */
export async function createGpu(options: GpuOptions = {}): Promise<Gpu> {
  if (options.device) {
    const info = options.device.adapterInfo;
    return new Gpu(options.device, info?.description || info?.vendor || "device", false);
  }
  const nav = globalThis.navigator as Navigator & { gpu?: GPU };
  if (!nav?.gpu) {
    throw new WebGpuUnavailableError(
      "WebGPU is not available: run Deno with --unstable-webgpu " +
        "(e.g. `deno run -A --unstable-webgpu examples/generate.ts`)",
    );
  }
  const adapter = await nav.gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) {
    throw new WebGpuUnavailableError(
      "No WebGPU adapter found: install a Vulkan driver for your GPU; on a machine without a GPU " +
        "install Mesa's software driver (`apt-get install mesa-vulkan-drivers`)",
    );
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    },
  });
  const info = adapter.info;
  return new Gpu(device, info.description || info.vendor || "unknown adapter", true);
}
