/**
 * Adapter and device acquisition with the adapter's own limits, GPU error capture, the pipeline
 * cache and the arenas that own buffers.
 * @module
 */
import { Arena } from "./arena.ts";
import { GpuError, WebGpuUnavailableError } from "./errors.ts";

/** Options for {@link createGpu}. */
export interface GpuOptions {
  /** Use this device instead of requesting one; its limits are checked where they matter. */
  device?: GPUDevice;
  /** Passed to `requestAdapter`. Default "high-performance". */
  powerPreference?: GPUPowerPreference;
}

const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "timestamp-query"];

/** The numeric limits of a device, by name (a subset of GPUSupportedLimits). */
export type Limits = Partial<Record<keyof GPUSupportedLimits, number>>;

/**
 * A WebGPU device plus what the package keeps beside it: a pipeline cache keyed by readable
 * names, error capture, and the arenas that own every buffer made through it.
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
  readonly #arenas = new Set<Arena>();
  readonly #ownsDevice: boolean;
  #firstError: GPUError | null = null;
  #lost: string | null = null;
  #disposed = false;
  #notDone: GPUBuffer | null = null;
  #scratchWord: GPUBuffer | null = null;
  readonly #onError = (e: Event) => {
    this.#firstError ??= (e as GPUUncapturedErrorEvent).error;
  };

  /** Wraps `device`; `ownsDevice` says whether `dispose()` destroys it. */
  constructor(device: GPUDevice, adapterName: string, ownsDevice: boolean) {
    this.device = device;
    this.adapterName = adapterName;
    this.hasTimestamps = device.features.has("timestamp-query");
    this.#ownsDevice = ownsDevice;
    // Removed again by dispose(): models made and freed on one shared device leave nothing behind.
    device.addEventListener("uncapturederror", this.#onError);
    device.lost.then((info) => {
      if (!this.#disposed) this.#lost = info.message || info.reason || "unknown reason";
    });
  }

  /** Whether `dispose()` ran. */
  get disposed(): boolean {
    return this.#disposed;
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
   * Throws a {@link GpuError} naming every limit of this device below `needs`, for `what`.
   * Called when a model is created, so a device made with WebGPU's default limits is refused
   * up front rather than failing at the first launch.
   */
  requireLimits(needs: Limits, what: string): void {
    const have = this.device.limits as unknown as Record<string, number>;
    const short = Object.entries(needs).filter(([k, v]) => (have[k] ?? 0) < (v ?? 0));
    if (short.length > 0) {
      throw new GpuError(
        `this device's limits are too low for ${what}: ` +
          short.map(([k, v]) => `${k} is ${have[k]}, needs ${v}`).join("; ") +
          ". Create the device with requiredLimits taken from its adapter (createGpu() does), " +
          "or let createModel request its own device",
      );
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

  /** A new arena on this device; {@link dispose} frees it with the rest. */
  arena(label: string): Arena {
    const a = new Arena(this, label, (x) => this.#arenas.delete(x));
    if (this.#disposed) a.dispose();
    else this.#arenas.add(a);
    return a;
  }

  /**
   * A u32 buffer holding 0, bound as the `done` flag of launches that run outside a decode loop
   * (kernels exit at once when word 0 of their `done` buffer is nonzero).
   */
  get notDone(): GPUBuffer {
    // WebGPU zero-fills new buffers, so this one holds 0 without a write.
    this.#notDone ??= this.device.createBuffer({
      label: "not done",
      size: 16,
      usage: GPUBufferUsage.STORAGE,
    });
    return this.#notDone;
  }

  /**
   * A small buffer bound in place of an absent writable input (a kernel's optional output that
   * a launch does not use; it is never written). Separate from {@link notDone}: one buffer may
   * not be bound both read-only and writable in a launch.
   */
  get scratchWord(): GPUBuffer {
    this.#scratchWord ??= this.device.createBuffer({
      label: "unused output",
      size: 16,
      usage: GPUBufferUsage.STORAGE,
    });
    return this.#scratchWord;
  }

  /** Number of live buffers in all arenas (tests use it to find leaks). */
  get liveBuffers(): number {
    let n = 0;
    for (const a of this.#arenas) n += a.liveBuffers;
    return n;
  }

  /**
   * Reads `size` bytes of `buffer` back to the host. This is a host sync (>= 10 ms in Deno):
   * for tests, set-up and debugging, never inside the decode loop.
   */
  async read(buffer: GPUBuffer, size = buffer.size, offset = 0): Promise<ArrayBuffer> {
    if (this.#disposed) throw new GpuError("the GPU objects were disposed: nothing to read back");
    const staging = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      // Once disposed, errors are no longer captured and the source may be gone: refuse the data.
      if (this.#disposed) throw new GpuError("the GPU objects were disposed during a read-back");
      this.check("read-back");
      return staging.getMappedRange().slice(0);
    } finally {
      staging.destroy();
    }
  }

  /** Frees every arena, and the device if this object requested it. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.device.removeEventListener("uncapturederror", this.#onError);
    for (const a of [...this.#arenas]) a.dispose();
    this.#notDone?.destroy();
    this.#scratchWord?.destroy();
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
 * import { createGpu } from "@ahead/mtp/internals";
 * const gpu = await createGpu({ powerPreference: "high-performance" });
 * console.log(gpu.adapterName, gpu.device.limits.maxStorageBufferBindingSize);
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
