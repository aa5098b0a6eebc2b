/**
 * Matrix-product benchmark: on whatever GPU it finds, in one run,
 * - the f32 FMA peak, measured with a kernel of long independent vec4 fma chains: the ceiling
 *   (the same kernel runs for 30 ms before each timed measurement, so that clocks are up);
 * - y = x W^T, dX = dY W and dW = dY^T X (kernels/matmul.ts) on the Linear shapes of the bench
 *   models: model (a), 1.1B f16, at 512 rows and at one prefill chunk; training shapes of model
 *   (b), d512 with f32 weights, at 4096 rows; for a sweep of tile shapes and K splits, each
 *   output checked (every unsplit tile must give the same bits, splits within 1e-5, a sample of
 *   the first and last outputs against the CPU reference);
 * - the best tile per shape class and the split target that serves them best, installed in
 *   matmul.ts's tables (MATMUL_TILES, MATMUL_SPLIT) for the rest of the run: copy them there;
 * - the prefill of a 512-token prompt on both bench models through the public API
 *   (`complete(model, prompt, { maxTokens: 1 })`, `stats.prefillSeconds`, median of 3 after a
 *   first run that compiles the pipelines), greedy and speculative, and the GPU time of one
 *   prefill chunk by kernel.
 *
 *     deno run -A --unstable-webgpu bench/matmul.ts [--json FILE] [--quick] [--tokens N]
 *       [--prefill-only] [--no-prefill] [--budget SECONDS]
 *
 * --quick: tiny shapes and models, for a software GPU. --prefill-only: only the prefill (it uses
 * the public API alone, so it also runs on a checkout from before these kernels, for a
 * before/after comparison in one GPU session).
 * @module
 */
import { parseArgs } from "node:util";
import { complete, createModel, type Model, type ModelConfigInput } from "../mod.ts";
import {
  allocKv,
  allocScratch,
  createGpu,
  encode,
  type Gpu,
  type Matrix,
  PREFILL_CHUNK,
  ropeTable,
  type Tensor,
  trunk,
} from "../internals.ts";
import { timePasses } from "./timing.ts";
import { type Fma, fmaPeak } from "./peak.ts";
import { benchModels } from "./models.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "string" },
    quick: { type: "boolean", default: false },
    tokens: { type: "string", default: "512" },
    "prefill-only": { type: "boolean", default: false },
    "no-prefill": { type: "boolean", default: false },
    budget: { type: "string", default: "200" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log(
    "Usage: deno run -A --unstable-webgpu bench/matmul.ts [--json FILE] [--quick] [--tokens N] " +
      "[--prefill-only] [--no-prefill] [--budget SECONDS]",
  );
  Deno.exit(0);
}
const TOKENS = Number(args.tokens);
const quick = args.quick;
/** Seconds the sweep may take; shapes after it are skipped. */
const BUDGET_S = Number(args.budget);

/** Seeded uniform values in [-scale, scale) (xorshift; fast enough for 100M values). */
function random(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 * 2 - 1) * scale;
  }
  return out;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

// ---------------------------------------------------------------------------------------------
// The sweep (new kernels only: imported when used, so --prefill-only runs on an older checkout)

type MM = typeof import("../kernels/matmul.ts");
type Tune = import("../kernels/matmul.ts").MatmulTune;
type Op = import("../kernels/matmul.ts").MatmulOp;

/**
 * One product to measure. forward: x [m, k] W^T, W [n (2n gated), k]; dx: dY [m, n] W, W [n, k];
 * dw: dY [m, n]^T X [m, k].
 */
interface Shape {
  name: string;
  op: Op;
  m: number;
  n: number;
  k: number;
  f16: boolean;
  gated?: boolean;
}

/** The result's rows, columns and sum length, as the kernel sees them. */
function dims(s: Shape): { rows: number; cols: number; red: number } {
  const n = s.gated ? 2 * s.n : s.n;
  if (s.op === "forward") return { rows: s.m, cols: n, red: s.k };
  if (s.op === "dx") return { rows: s.m, cols: s.k, red: n };
  return { rows: n, cols: s.k, red: s.m };
}

const flops = (s: Shape) => {
  const d = dims(s);
  return 2 * d.rows * d.cols * d.red;
};

/** The Linear layers of a model shape: [name, N, K, gated]. */
function linears(c: ModelConfigInput): [string, number, number, boolean][] {
  const hd = c.headDim ?? c.dModel / c.nHeads;
  const kv = c.nKvHeads ?? c.nHeads;
  return [
    ["qkv", (c.nHeads + 2 * kv) * hd, c.dModel, false],
    ["o", c.dModel, c.nHeads * hd, false],
    ["gate_up", c.dFF, c.dModel, true],
    ["down", c.dModel, c.dFF, false],
    ["lm_head", c.vocabSize, c.dModel, false],
  ];
}

function shapes(): Shape[] {
  const models = benchModels(quick, 2048);
  const [a, b] = Object.entries(models);
  const out: Shape[] = [];
  const f16a = a[1].dtype === "f16";
  const big = quick ? 96 : 512, train = quick ? 160 : 4096;
  for (const [l, n, k, gated] of linears(a[1]).slice(0, 4)) {
    out.push({
      name: `${a[0]} ${l} m${PREFILL_CHUNK}`,
      op: "forward",
      m: PREFILL_CHUNK,
      n,
      k,
      f16: f16a,
      gated,
    });
  }
  for (const [l, n, k, gated] of linears(a[1])) {
    out.push({ name: `${a[0]} ${l} m${big}`, op: "forward", m: big, n, k, f16: f16a, gated });
  }
  for (const op of ["forward", "dx", "dw"] as const) {
    for (const [l, n, k, gated] of linears(b[1])) {
      out.push({ name: `${b[0]} ${l} ${op} m${train}`, op, m: train, n, k, f16: false, gated });
    }
  }
  for (const op of ["dx", "dw"] as const) {
    for (const [l, n, k, gated] of [linears(a[1])[0], linears(a[1])[3]]) {
      out.push({
        name: `${a[0]} ${l} ${op} m${big}`,
        op,
        m: big,
        n,
        k,
        f16: op === "dx" && f16a,
        gated,
      });
    }
  }
  return out;
}

/** The tiles the sweep measures. */
const TILES: Tune[] = [
  { tm: 8, tn: 8, wx: 16, wy: 16, bk: 16 }, // 128 x 128
  { tm: 8, tn: 8, wx: 16, wy: 16, bk: 8 },
  { tm: 8, tn: 8, wx: 16, wy: 16, bk: 32 },
  { tm: 8, tn: 8, wx: 16, wy: 8, bk: 16 }, // 64 x 128
  { tm: 8, tn: 8, wx: 8, wy: 16, bk: 16 }, // 128 x 64
  { tm: 8, tn: 8, wx: 8, wy: 8, bk: 16 }, // 64 x 64
  { tm: 8, tn: 8, wx: 8, wy: 8, bk: 8 },
  { tm: 4, tn: 8, wx: 16, wy: 16, bk: 16 }, // 64 x 128, 256 threads
  { tm: 4, tn: 4, wx: 16, wy: 16, bk: 16 }, // 64 x 64, 256 threads
  { tm: 4, tn: 8, wx: 8, wy: 8, bk: 16 }, // 32 x 64
  { tm: 4, tn: 4, wx: 8, wy: 8, bk: 16 }, // 32 x 32
  { tm: 8, tn: 8, wx: 16, wy: 16, bk: 16, prefetch: false },
  { tm: 8, tn: 8, wx: 16, wy: 8, bk: 16, prefetch: false },
  { tm: 8, tn: 8, wx: 8, wy: 8, bk: 16, prefetch: false },
];
const tileName = (t: Tune) =>
  `${t.tm * t.wy}x${t.tn * t.wx} ${t.tm}x${t.tn} bk${t.bk}${t.prefetch === false ? " np" : ""}`;
const TARGETS = [132, 264, 528];

interface Measure {
  shape: string;
  tile: string;
  split: number;
  ms: number;
  tflops: number;
  ok: boolean;
  note?: string;
}

/** Runs the sweep on one device; returns every measurement. */
async function sweep(gpu: Gpu, mm: MM, list: Shape[], load: Fma): Promise<Measure[]> {
  const out: Measure[] = [];
  const lim = gpu.device.limits;
  const tiles = (quick ? [TILES[0], TILES[5], TILES[8]] : TILES).filter((t) =>
    mm.tileBytes(t) <= lim.maxComputeWorkgroupStorageSize &&
    t.wx * t.wy <= lim.maxComputeInvocationsPerWorkgroup
  );
  const t0 = performance.now();
  for (const [si, s] of list.entries()) {
    if (performance.now() - t0 > BUDGET_S * 1000) {
      console.log(`  sweep budget (${BUDGET_S} s) spent: ${s.name} and later shapes skipped`);
      break;
    }
    const a = gpu.arena(`sweep ${s.name}`);
    try {
      const d = dims(s);
      const nAll = s.gated ? 2 * s.n : s.n;
      // inputs: A operand [m, k or n], W or X
      const w = random(nAll * s.k, 100 + si, 1 / Math.sqrt(s.k));
      if (s.f16) w.set(new Float16Array(w));
      const upload = (data: Float32Array): Tensor => a.tensor("in", [data.length], "f32", data);
      const matrix = (): Matrix => ({
        outputs: s.n,
        cols: s.k,
        dtype: s.f16 ? "f16" : "f32",
        gated: !!s.gated,
        parts: [{
          buffer: a.storage("w", s.f16 ? new Float16Array(w) : w),
          start: 0,
          outputs: s.n,
        }],
      });
      const outWords = d.rows * d.cols;
      const y = a.tensor("out", [outWords]);
      let launch: (tune: Tune) => ReturnType<MM["matmul"]>;
      let refAt: (e: number) => number;
      if (s.op === "forward") {
        const x = random(s.m * s.k, 200 + si);
        const xt = upload(x), wm = matrix();
        launch = (tune) => mm.matmul(a, { x: xt, w: wm, y, rows: s.m, tune });
        refAt = (e) => {
          const i = Math.floor(e / d.cols), j = e % d.cols;
          let acc = 0;
          for (let r = 0; r < s.k; r++) acc += x[i * s.k + r] * w[j * s.k + r];
          return acc;
        };
      } else if (s.op === "dx") {
        const dy = random(s.m * nAll, 300 + si);
        const dyt = upload(dy), wm = matrix();
        launch = (tune) => mm.matmulDx(a, { dy: dyt, w: wm, dx: y, rows: s.m, tune });
        refAt = (e) => {
          const i = Math.floor(e / d.cols), j = e % d.cols;
          let acc = 0;
          for (let r = 0; r < nAll; r++) acc += dy[i * nAll + r] * w[r * s.k + j];
          return acc;
        };
      } else {
        const dy = random(s.m * nAll, 400 + si), x = random(s.m * s.k, 500 + si);
        const dyt = upload(dy), xt = upload(x);
        launch = (tune) =>
          mm.matmulDw(a, { dy: dyt, x: xt, dw: y, rows: s.m, n: nAll, k: s.k, tune });
        refAt = (e) => {
          const i = Math.floor(e / d.cols), j = e % d.cols;
          let acc = 0;
          for (let r = 0; r < s.m; r++) acc += dy[r * nAll + i] * x[r * s.k + j];
          return acc;
        };
      }
      // A sample of the output: its first and last elements.
      const span = Math.min(outWords, 2048);
      const tailAt = Math.floor((outWords - span) / 4) * 4;
      const sample = async () => [
        ...new Float32Array(await gpu.read(y.buffer, span * 4)),
        ...new Float32Array(await gpu.read(y.buffer, span * 4, tailAt * 4)),
      ];
      const sampleIdx = [
        ...Array.from({ length: span }, (_, i) => i),
        ...Array.from({ length: span }, (_, i) => tailAt + i),
      ];
      let base: number[] | null = null;
      for (const t of tiles) {
        const splits = new Set([
          1,
          ...TARGETS.map((g) => mm.splitCount(d.rows, d.cols, d.red, t, g)),
        ]);
        for (const split of splits) {
          const tune = { ...t, split };
          const dispatches = launch(tune);
          // one pass of `reps` launches lasts at least ~2 ms
          const first = await timePasses(gpu, 1, (p) => encode(p, dispatches));
          const reps = Math.max(1, Math.min(50, Math.ceil(2e6 / Math.max(first.medianNs, 1))));
          load.burn(30);
          const { medianNs } = await timePasses(gpu, 5, (p) => {
            for (let r = 0; r < reps; r++) encode(p, dispatches);
          });
          const ms = medianNs / reps / 1e6;
          const got = await sample();
          let ok = got.every(Number.isFinite);
          let note: string | undefined;
          if (!base) {
            base = got;
            // the first result against the CPU (f64 sums), every 16th sampled output
            let num = 0, den = 0;
            for (let i = 0; i < sampleIdx.length; i += 16) {
              const r = refAt(sampleIdx[i]);
              num += (got[i] - r) ** 2;
              den += r * r;
            }
            const err = Math.sqrt(num / den);
            ok &&= err < 1e-5;
            note = `vs CPU ${err.toExponential(1)}`;
          } else {
            let num = 0, den = 0;
            got.forEach((v, i) => {
              num += (v - base![i]) ** 2;
              den += base![i] ** 2;
            });
            const err = Math.sqrt(num / den);
            ok &&= split > 1 ? err < 1e-5 : got.every((v, i) => Object.is(v, base![i]));
            if (!ok) note = `vs first ${err.toExponential(1)}`;
          }
          const m: Measure = {
            shape: s.name,
            tile: tileName(t),
            split,
            ms,
            tflops: flops(s) / ms / 1e9,
            ok,
            note,
          };
          out.push(m);
          if (!ok) console.log(`  WRONG: ${s.name} ${m.tile} split ${split} ${note ?? ""}`);
        }
      }
      const best = out.filter((m) => m.shape === s.name && m.ok).sort((p, q) => p.ms - q.ms)[0];
      console.log(
        `  ${s.name.padEnd(28)} best ${best?.tile} split ${best?.split}: ` +
          `${best?.tflops.toFixed(2)} TFLOP/s`,
      );
    } finally {
      a.dispose();
    }
  }
  return out;
}

/**
 * The tile per shape class and the split target with the least time: for each target, each
 * class takes the tile whose time over the class's shapes (split as the target makes it) is
 * least; targets compare by the sum over shapes of time / best time of the shape.
 */
function choose(mm: MM, list: Shape[], ms: Measure[]) {
  const time = (s: Shape, t: Tune, split: number) =>
    ms.find((m) => m.shape === s.name && m.tile === tileName(t) && m.split === split && m.ok)?.ms;
  const bestOf = (s: Shape) =>
    Math.min(...ms.filter((m) => m.shape === s.name && m.ok).map((m) => m.ms));
  const classes = new Map<string, Shape[]>();
  for (const s of list) {
    const c = mm.shapeClass(s.op, dims(s).rows);
    classes.set(c, [...(classes.get(c) ?? []), s]);
  }
  let best: { target: number; score: number; tiles: Record<string, Tune> } | null = null;
  for (const target of TARGETS) {
    const tiles: Record<string, Tune> = {};
    let score = 0;
    for (const [c, group] of classes) {
      let pick: { t: Tune; total: number; ratio: number } | null = null;
      for (const t of TILES) {
        let total = 0, ratio = 0;
        for (const s of group) {
          const d = dims(s);
          const v = time(s, t, mm.splitCount(d.rows, d.cols, d.red, t, target));
          total += v ?? Infinity;
          ratio += (v ?? Infinity) / bestOf(s);
        }
        if (!pick || total < pick.total) pick = { t, total, ratio };
      }
      tiles[c] = pick!.t;
      score += pick!.ratio;
    }
    if (!best || score < best.score) best = { target, score, tiles };
  }
  return best!;
}

// ---------------------------------------------------------------------------------------------
// Prefill through the public API

interface Prefill {
  model: string;
  mode: string;
  coldSeconds: number;
  seconds: number[];
  tokensPerSecond: number;
}

/** GPU microseconds per kernel family of one prefill chunk (positions ending at TOKENS - 1). */
async function chunkProfile(model: Model): Promise<[string, number][]> {
  const gpu = model.gpu;
  const c = model.config;
  const a = gpu.arena("chunk profile");
  try {
    const capacity = c.maxSeqLen + 8;
    const rows = Math.min(PREFILL_CHUNK, TOKENS - 1);
    const ctx = {
      arena: a,
      config: c,
      capacity,
      rope: a.tensor("rope", [capacity, c.headDim / 2, 2], "f32", ropeTable(capacity, c)),
    };
    const ids = a.tensor("ids", [rows], "u32", Uint32Array.from({ length: rows }, (_, i) => i));
    const start = TOKENS - 1 - rows;
    const positions = a.tensor(
      "positions",
      [rows],
      "u32",
      Uint32Array.from({ length: rows }, (_, i) => start + i),
    );
    const program = trunk(ctx, model.trunk, {
      ids,
      positions,
      kv: allocKv(a, c, capacity, c.nLayers),
      s: allocScratch(a, c, rows, capacity),
    });
    const byKind = new Map<string, number>();
    const reps = 5;
    const { ns } = await timePasses(gpu, program.length, (pass, i) => {
      for (let r = 0; r < reps; r++) encode(pass, [program[i]]);
    });
    program.forEach((d, i) => {
      const kind = d.label.replace(/^layers\.\d+\./, "").replace(/\.part\d+/, "");
      byKind.set(kind, (byKind.get(kind) ?? 0) + ns[i] / reps / 1e3);
    });
    return [...byKind.entries()].sort((p, q) => q[1] - p[1]);
  } finally {
    a.dispose();
  }
}

async function prefill(): Promise<
  { runs: Prefill[]; profiles: Record<string, [string, number][]> }
> {
  const runs: Prefill[] = [];
  const profiles: Record<string, [string, number][]> = {};
  for (const [name, config] of Object.entries(benchModels(quick, TOKENS + 32))) {
    const t0 = performance.now();
    const model = await createModel(config, { seed: 1 });
    console.log(`  ${name}: weights ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      const prompt = Array.from(
        { length: TOKENS },
        (_, i) => 1 + (i * 37 + 11) % (model.config.vocabSize - 1),
      );
      for (const mode of ["greedy", "speculative"] as const) {
        const seconds: number[] = [];
        for (let i = 0; i < 4; i++) {
          const r = await complete(model, prompt, { maxTokens: 1, mode, ignoreEos: true });
          seconds.push(r.stats.prefillSeconds);
        }
        const warm = median(seconds.slice(1));
        runs.push({
          model: name,
          mode,
          coldSeconds: seconds[0],
          seconds: seconds.slice(1),
          tokensPerSecond: TOKENS / warm,
        });
        console.log(
          `  ${name} ${mode}: prefill of ${TOKENS} tokens ${(warm * 1000).toFixed(1)} ms ` +
            `(${(TOKENS / warm).toFixed(0)} tokens/s; first run ${
              (seconds[0] * 1000).toFixed(0)
            } ms)`,
        );
      }
      profiles[name] = await chunkProfile(model);
    } finally {
      model.dispose();
    }
  }
  return { runs, profiles };
}

// ---------------------------------------------------------------------------------------------

const gpu = await createGpu();
if (!gpu.hasTimestamps) {
  console.error("this GPU has no timestamp-query: the benchmark needs it");
  Deno.exit(1);
}
console.log(`GPU: ${gpu.adapterName}`);
const result: Record<string, unknown> = {
  adapter: gpu.adapterName,
  date: new Date().toISOString(),
};
let peak = 0;
if (!args["prefill-only"]) {
  const load = await fmaPeak(gpu, { quick });
  peak = load.peak;
  console.log(`f32 FMA peak (measured): ${peak.toFixed(2)} TFLOP/s`);
  const mm: MM = await import("../kernels/matmul.ts");
  const list = shapes();
  const t0 = performance.now();
  const measures = await sweep(gpu, mm, list, load);
  load.dispose();
  console.log(
    `sweep: ${measures.length} runs in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  const measured = list.filter((s) => measures.some((m) => m.shape === s.name));
  const pick = choose(mm, measured, measures);
  Object.assign(mm.MATMUL_TILES, pick.tiles);
  mm.MATMUL_SPLIT.target = pick.target;

  // The table: per shape, each tile at its best measured split, and the picked configuration.
  const cols = TILES.filter((t) => measures.some((m) => m.tile === tileName(t)));
  console.log(
    `\nTFLOP/s per shape and tile (best split; * = the installed pick, split target ${pick.target}):`,
  );
  console.log(
    "shape".padEnd(30) + cols.map((t) => tileName(t).padStart(18)).join("") +
      "   picked   % peak",
  );
  const rowsOut = measured.map((s) => {
    const d = dims(s);
    const cls = mm.shapeClass(s.op, d.rows);
    const t = pick.tiles[cls];
    const split = mm.splitCount(d.rows, d.cols, d.red, t, pick.target);
    const picked = measures.find((m) =>
      m.shape === s.name && m.tile === tileName(t) && m.split === split
    );
    const cells = cols.map((c) => {
      const ms = measures.filter((m) => m.shape === s.name && m.tile === tileName(c) && m.ok);
      const b = ms.sort((p, q) => p.ms - q.ms)[0];
      return b ? `${b.tflops.toPrecision(3)}/${b.split}${c === t ? "*" : " "}` : "-";
    });
    console.log(
      s.name.padEnd(30) + cells.map((x) => x.padStart(18)).join("") +
        `${picked?.tflops.toFixed(2).padStart(9)} ${
          (100 * (picked?.tflops ?? 0) / peak).toFixed(0).padStart(7)
        }%`,
    );
    return {
      ...s,
      class: cls,
      flops: flops(s),
      picked: {
        tile: tileName(t),
        split,
        tflops: picked?.tflops,
        pctPeak: 100 * (picked?.tflops ?? 0) / peak,
      },
    };
  });
  console.log("\nInstalled tiles (copy into MATMUL_TILES):");
  for (const [c, t] of Object.entries(pick.tiles)) console.log(`  "${c}": ${JSON.stringify(t)},`);
  console.log(`Split target: ${pick.target}`);
  const wrong = measures.filter((m) => !m.ok);
  console.log(wrong.length ? `${wrong.length} WRONG results` : "every result checked out");
  Object.assign(result, {
    fmaPeakTflops: peak,
    tiles: TILES,
    shapes: rowsOut,
    measures,
    picked: pick,
    wrong: wrong.length,
  });
}
gpu.dispose();
if (!args["no-prefill"]) {
  console.log(`\nprefill of ${TOKENS} tokens:`);
  Object.assign(result, { prefill: await prefill(), tokens: TOKENS });
}
if (args.json) {
  await Deno.writeTextFile(args.json, JSON.stringify(result, null, 1));
  console.log(`wrote ${args.json}`);
}
