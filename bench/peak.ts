/**
 * The GPU's f32 FMA peak, measured with a kernel of its own: what matrix-product and training
 * figures are a percentage of (WebGPU exposes no tensor cores).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { timePasses } from "./timing.ts";

/**
 * The FMA kernel: long chains of independent vec4 fma per thread. It measures the f32 ceiling,
 * and it keeps the GPU busy right before each timed measurement: on the H200 a kernel timed
 * after the GPU sat idle (host syncs) ran up to 5x slower than the same kernel timed under
 * load (clocks ramp with load), which hid every difference between tiles.
 */
export interface Fma {
  /** TFLOP/s: the best of three timed runs, each after ~0.3 s of load. */
  peak: number;
  /** Queues about `ms` milliseconds of FMA work, no wait: submit the work to time right after. */
  burn(ms: number): void;
  dispose(): void;
}

export async function fmaPeak(gpu: Gpu, o: { quick?: boolean } = {}): Promise<Fma> {
  const dev = gpu.device;
  const iters = o.quick ? 64 : 4096;
  const groups = o.quick ? 16 : 8192;
  const chains = Array.from({ length: 8 }, (_, i) => i);
  const flopsPerDispatch = groups * 256 * iters * chains.length * 4 * 2;
  const module = dev.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read_write> out: array<vec4f>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3u) {
  let s = f32(g.x) * 1e-9;
  ${
      chains.map((i) => `var a${i} = vec4f(s + ${i}.0, s - ${i}.5, s * ${i}.25, s + 0.${i});`).join(
        "\n  ",
      )
    }
  let m = vec4f(0.99999);
  let c = vec4f(1e-6);
  for (var i = 0u; i < ${iters}u; i++) {
    ${chains.map((i) => `a${i} = fma(a${i}, m, c);`).join("\n    ")}
  }
  out[g.x] = ${chains.map((i) => `a${i}`).join(" + ")};
}`,
  });
  const pipe = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const arena = gpu.arena("fma");
  const out = arena.buffer("fma out", groups * 256 * 16, GPUBufferUsage.STORAGE);
  const bg = dev.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: out } }],
  });
  const dispatch = (pass: GPUComputePassEncoder, n: number) => {
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bg);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(groups);
  };
  let msPerDispatch = 10;
  const burn = (ms: number) => {
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    dispatch(pass, Math.max(1, Math.ceil(ms / msPerDispatch)));
    pass.end();
    dev.queue.submit([enc.finish()]);
  };
  let peak = 0;
  for (let round = 0; round < 3; round++) {
    burn(300);
    const { medianNs } = await timePasses(gpu, 7, (pass) => dispatch(pass, 1));
    peak = Math.max(peak, flopsPerDispatch / medianNs / 1e3);
    msPerDispatch = flopsPerDispatch / (peak * 1e9);
  }
  return { peak, burn, dispose: () => arena.dispose() };
}
