/**
 * GPU timing for the benchmarks: compute passes timed with timestamp queries.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";

/** What {@link timePasses} measured. */
export interface PassTimes {
  /** GPU nanoseconds of each pass. */
  ns: number[];
  /** The median of `ns`. */
  medianNs: number;
  /** CPU milliseconds of `finish()` and of `submit()` for the command buffer. */
  finishMs: number;
  submitMs: number;
}

/** Records `passes` compute passes filled by `body`, each timed on the GPU, and runs them. */
export async function timePasses(
  gpu: Gpu,
  passes: number,
  body: (pass: GPUComputePassEncoder, index: number) => void,
): Promise<PassTimes> {
  const dev = gpu.device;
  const qs = dev.createQuerySet({ type: "timestamp", count: 2 * passes });
  const resolve = dev.createBuffer({
    size: 16 * passes,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = dev.createBuffer({
    size: 16 * passes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const enc = dev.createCommandEncoder();
    for (let i = 0; i < passes; i++) {
      const pass = enc.beginComputePass({
        timestampWrites: {
          querySet: qs,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      body(pass, i);
      pass.end();
    }
    enc.resolveQuerySet(qs, 0, 2 * passes, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * passes);
    const t0 = performance.now();
    const cb = enc.finish();
    const t1 = performance.now();
    dev.queue.submit([cb]);
    const t2 = performance.now();
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    gpu.check("timing");
    const ns = Array.from({ length: passes }, (_, i) => Number(t[2 * i + 1] - t[2 * i]));
    const sorted = [...ns].sort((a, b) => a - b);
    return { ns, medianNs: sorted[Math.floor(passes / 2)], finishMs: t1 - t0, submitMs: t2 - t1 };
  } finally {
    qs.destroy();
    resolve.destroy();
    read.destroy();
  }
}
