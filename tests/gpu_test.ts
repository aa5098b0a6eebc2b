import assert from "node:assert/strict";
import { GpuError } from "../mod.ts";
import { createGpu } from "../gpu/device.ts";
import { makeDispatch, run } from "../kernels/dispatch.ts";

Deno.test("createGpu() requests the adapter's limits, not the WebGPU defaults", async () => {
  const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
  const gpu = await createGpu();
  try {
    const l = gpu.device.limits;
    assert.equal(l.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
    assert.equal(l.maxBufferSize, adapter.limits.maxBufferSize);
    assert.equal(l.maxComputeWorkgroupStorageSize, adapter.limits.maxComputeWorkgroupStorageSize);
    assert.equal(gpu.device.features.has("shader-f16"), adapter.features.has("shader-f16"));
  } finally {
    gpu.dispose();
  }
});

Deno.test("a GPU validation error surfaces as a GpuError in the caller, not as a log line", async () => {
  const gpu = await createGpu();
  try {
    const b = gpu.arena("t").storage("b", 16);
    const enc = gpu.device.createCommandEncoder();
    enc.copyBufferToBuffer(b, 0, b, 0, 64); // out of range, and a buffer onto itself
    gpu.device.queue.submit([enc.finish()]);
    await assert.rejects(() => gpu.read(b), (e: unknown) => {
      assert.ok(e instanceof GpuError);
      assert.match(e.message, /GPU error during read-back/);
      return true;
    });
  } finally {
    gpu.dispose();
  }
});

Deno.test("a shader that does not compile surfaces as a GpuError naming the kernel", async () => {
  const gpu = await createGpu();
  try {
    const a = gpu.arena("t");
    const state = a.storage("state", 16);
    run(gpu, [
      makeDispatch(a, {
        kernel: "broken",
        code: "@compute @workgroup_size(1) fn main() { let active = 1; }",
        params: [0],
        bindings: [["state", state, "read", 1]],
        workgroups: [1],
        label: "broken",
      }),
    ], "test");
    await assert.rejects(() => gpu.read(state), /broken/);
  } finally {
    gpu.dispose();
  }
});

/** Runs createGpu() in a child process after `setup` (JS) and returns what it printed. */
async function createGpuAfter(setup: string): Promise<string> {
  const url = new URL("../gpu/device.ts", import.meta.url).href;
  const code = `${setup}
const { createGpu } = await import(${JSON.stringify(url)});
try { await createGpu(); console.log("no error"); } catch (e) { console.log(e.name + ": " + e.message); }`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout);
}

Deno.test("without navigator.gpu, createGpu() says how to enable WebGPU", async () => {
  const text = await createGpuAfter(
    `Object.defineProperty(navigator, "gpu", { value: undefined });`,
  );
  assert.match(
    text,
    /^WebGpuUnavailableError: WebGPU is not available: run Deno with --unstable-webgpu/,
  );
});

Deno.test("without an adapter, createGpu() says which driver to install", async () => {
  const text = await createGpuAfter(
    `Object.defineProperty(navigator, "gpu", { value: { requestAdapter: async () => null } });`,
  );
  assert.match(text, /^WebGpuUnavailableError: No WebGPU adapter found: .*mesa-vulkan-drivers/);
});

Deno.test("the pipeline cache builds a kernel variant once", async () => {
  const gpu = await createGpu();
  try {
    const code =
      "@group(0) @binding(0) var<uniform> p: u32; @compute @workgroup_size(1) fn main() {}";
    const a = gpu.pipeline("noop", code, [], {});
    const b = gpu.pipeline("noop", code, [], {});
    assert.equal(a, b);
  } finally {
    gpu.dispose();
  }
});
