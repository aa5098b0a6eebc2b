// CI precondition: a WebGPU adapter must exist (lavapipe without a GPU). GPU tests are never skipped.
const adapter = await navigator.gpu?.requestAdapter();
if (!adapter) {
  console.error("ci: no WebGPU adapter: install mesa-vulkan-drivers (or a GPU driver) and retry");
  Deno.exit(1);
}
console.log(`ci: WebGPU adapter: ${adapter.info.description || adapter.info.vendor}`);
