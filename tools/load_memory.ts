/**
 * Peak host memory of loading a checkpoint (Linux: VmHWM of /proc/self/status), against the
 * checkpoint's size and its largest tensor: loadModel streams tensors one at a time, so the
 * peak should stay near the largest tensor, not the file.
 *
 *     deno run -A --unstable-webgpu tools/load_memory.ts --model DIR
 * @module
 */
import { parseArgs } from "node:util";
import { loadModel } from "../mod.ts";
import { openCheckpoint } from "../internals.ts";

const { values } = parseArgs({ args: Deno.args, options: { model: { type: "string" } } });
if (!values.model) {
  console.error("usage: tools/load_memory.ts --model DIR");
  Deno.exit(2);
}
const status = async (key: string) => {
  const m = (await Deno.readTextFile("/proc/self/status")).match(
    new RegExp(`${key}:\\s+(\\d+) kB`),
  );
  return m ? Number(m[1]) * 1024 : NaN;
};
const ckpt = await openCheckpoint(values.model);
let total = 0, largest = 0, largestName = "";
for (const t of ckpt.tensors.values()) {
  total += t.byteLength;
  if (t.byteLength > largest) [largest, largestName] = [t.byteLength, t.name];
}
ckpt.close();
const before = await status("VmRSS");
const t0 = performance.now();
const model = await loadModel(values.model, { maxSeqLen: 1024, onWarning: () => {} });
const secs = (performance.now() - t0) / 1000;
const peak = await status("VmHWM");
const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
const result = {
  checkpointBytes: total,
  largestTensor: largestName,
  largestTensorBytes: largest,
  rssBeforeLoad: before,
  peakRss: peak,
  peakAboveStart: peak - before,
  seconds: secs,
  adapter: model.adapterName,
};
model.dispose();
console.log(JSON.stringify(result, null, 2));
console.log(
  `loaded ${mb(total)} of tensors in ${secs.toFixed(1)} s on ${result.adapter}; peak RSS ${
    mb(peak)
  }, ` +
    `${mb(peak - before)} above the ${mb(before)} before loading; largest tensor ${largestName} ${
      mb(largest)
    }`,
);
