/**
 * Where does decode step time go? Separates, for one model's decode step:
 * - CPU time to encode a batch of steps and to submit it;
 * - GPU time of that batch, submitted whole (timestamps), per step and per launch;
 * - the sum of the step's kernels timed one by one;
 * and sweeps the gemv kernel's threads-per-row on the 1.1B model's matrix shapes.
 *
 *     deno run -A --unstable-webgpu bench/overhead.ts [--quick]
 * @module
 */
import { parseArgs } from "node:util";
import { createModel } from "../mod.ts";
import { encode, gemv, type Matrix, S, Session } from "../internals.ts";
import { timePasses } from "./timing.ts";
import { benchModels } from "./models.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: { quick: { type: "boolean", default: false } },
});
// The benchmark's small model (tiny-a with --quick), with room for 600 positions.
const config = benchModels(args.quick, 600)[args.quick ? "tiny-a" : "small"];

const model = await createModel(config, { seed: 1 });
const gpu = model.gpu;
console.log(`GPU: ${gpu.adapterName}`);
const session = new Session(model, { k: 1, drafts: null, promptLength: 4 });
session.start([1, 2, 3, 4], { limit: 590, stop: [] });
const n = session.step.length;
for (const steps of [1, 16, 64]) {
  let encodeMs = 0;
  const r = await timePasses(gpu, 1, (pass) => {
    const t = performance.now();
    for (let s = 0; s < steps; s++) encode(pass, session.step);
    encodeMs = performance.now() - t;
  });
  console.log(
    `${steps} steps x ${n} launches: encode ${
      (encodeMs * 1000 / (steps * n)).toFixed(2)
    } us/launch, ` +
      `finish ${r.finishMs.toFixed(2)} ms, submit ${r.submitMs.toFixed(2)} ms, ` +
      `GPU ${(r.ns[0] / 1e3 / steps).toFixed(1)} us/step = ${
        (r.ns[0] / 1e3 / (steps * n)).toFixed(2)
      } us/launch`,
  );
}
// The same launches with the done flag set: every kernel returns at once. Pure launch cost.
const st = new Uint32Array(S.WORDS);
st[S.DONE] = 1;
gpu.device.queue.writeBuffer(session.state.buffer, 0, st);
const r = await timePasses(gpu, 1, (pass) => {
  for (let s = 0; s < 64; s++) encode(pass, session.step);
});
console.log(
  `64 steps, all kernels exiting at once: GPU ${(r.ns[0] / 1e3 / (64 * n)).toFixed(2)} us/launch`,
);
session.dispose();

// gemv sweep on the 1.1B and small models' shapes: threads per row x rows per thread x unroll, for 1 and 4 query rows.
const arena = gpu.arena("sweep");
const shapes = [
  [3072, 2048, false],
  [2048, 2048, false],
  [16384, 2048, true],
  [2048, 8192, false],
  [32000, 2048, false],
  // the small model's
  [1024, 512, false],
  [512, 512, false],
  [3072, 512, true],
  [512, 1536, false],
  [32000, 512, false],
] as const;
// Each sweep point cycles through enough copies of the matrix (>= 256 MB in all) that no launch
// finds its weights in L2, as in a real step, where the other matrices evict them; a launch
// repeated on one copy reads a matrix under the L2 size from L2 and overstates small ones.
for (const [rows, cols, gated] of shapes) {
  // Random weights: all-zero buffers can read faster than real data (memory compression).
  const values = new Uint16Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = 0x2000 + ((i * 2654435761) >>> 20) % 0x3000;
  const outputs = gated ? rows / 2 : rows;
  const copies = Math.min(16, Math.max(1, Math.ceil(256e6 / (rows * cols * 2))));
  const ws: Matrix[] = Array.from({ length: copies }, () => ({
    outputs,
    cols,
    dtype: "f16",
    gated,
    parts: [{ buffer: arena.storage("w", values), start: 0, outputs }],
  }));
  const x = arena.tensor("x", [8, cols]);
  const y = arena.tensor("y", [8, outputs]);
  for (const k of [1, 4]) {
    const results: [string, number][] = [];
    for (
      const [tpr, ro] of [
        [8, 1],
        [16, 1],
        [32, 1],
        [64, 1],
        [128, 1],
        [8, 2],
        [16, 2],
        [32, 2],
        [64, 2],
      ] as const
    ) {
      if (ro * k > 8 || (k === 1 && ro > 1)) continue;
      const ds = ws.flatMap((w) =>
        gemv(arena, { x, w, y, rows: k, tune: { threadsPerRow: tpr, rowsPerThread: ro } })
      );
      const reps = 4 * copies;
      const once = () =>
        timePasses(gpu, 1, (pass) => {
          for (let i = 0; i < reps; i++) encode(pass, [ds[i % copies]]);
        });
      await once();
      const t = await once();
      results.push([`tpr${tpr}/ro${ro}`, rows * cols * 2 / (t.ns[0] / reps)]);
    }
    console.log(
      `gemv ${rows}x${cols}${gated ? " gated" : ""} k=${k} GB/s (cold, ${copies} copies): ` +
        results.map(([n, v]) => `${n} ${v.toFixed(0)}`).join(", "),
    );
  }
  for (const w of ws) arena.free(w.parts[0].buffer);
}
model.dispose();
