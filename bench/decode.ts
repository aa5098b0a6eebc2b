/**
 * Decode benchmark: on whatever GPU it finds, in one run,
 * - the copy bandwidth (a large vec4 copy kernel timed with timestamp queries): the ceiling;
 * - for a Llama-shaped ~1.1B f16 model and a small model: greedy, speculative with the model's
 *   own (random) heads, and speculative with a replay source proposing the true continuation
 *   (the ceiling of k-token verification);
 * - a table: ms/step, tokens/step, tokens/s, weight bytes read per second and % of the copy
 *   bandwidth, dispatches/step, host syncs per 100 tokens; and a per-kernel profile of one step.
 *
 *     deno task bench [--json FILE] [--quick] [--tokens N] [--peers] [--model DIR] [--only RE]
 *
 * --only keeps the models whose names match a regular expression (e.g. "^1.1B").
 * --train measures training throughput instead (bench/train.ts).
 * --model measures a checkpoint loaded with loadModel (a Hugging Face folder, path or URL)
 * instead of the two random-weight models.
 * --quick swaps in small models, for a software GPU. --peers also runs the PyTorch peers on
 * model (a) (bench/hf_peer.py: HF transformers with the dynamic and the static cache;
 * bench/torch_graph_peer.py: a decode step in one CUDA graph) and puts them in the same table;
 * they need python3 with PyTorch and transformers (the GPU machine).
 * @module
 */
import { parseArgs } from "node:util";
import {
  complete,
  createModel,
  type GenerationStats,
  loadModel,
  type Model,
  type ModelConfigInput,
  replayDrafts,
} from "../mod.ts";
import { createGpu, encode, type Gpu, Session } from "../internals.ts";
import { timePasses } from "./timing.ts";
import { benchModels } from "./models.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "string" },
    quick: { type: "boolean", default: false },
    tokens: { type: "string", default: "512" },
    peers: { type: "boolean", default: false },
    model: { type: "string" },
    train: { type: "boolean", default: false },
    only: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.train) {
  // Training throughput instead (bench/train.ts reads the same arguments).
  await import("./train.ts");
  Deno.exit(0);
}
if (args.help) {
  console.log(
    "Usage: deno task bench [--json FILE] [--quick] [--tokens N] [--peers] [--model DIR] [--only RE]",
  );
  Deno.exit(0);
}
const TOKENS = Number(args.tokens);
if (!Number.isInteger(TOKENS) || TOKENS < 8) {
  console.error("--tokens must be an integer >= 8");
  Deno.exit(2);
}
const PROMPT = Array.from({ length: 16 }, (_, i) => (i * 37 + 11) % 250);

const MODELS: Record<string, ModelConfigInput | string> = Object.fromEntries(
  Object.entries(
    args.model ? { [args.model]: args.model } : benchModels(args.quick, TOKENS + 32),
  ).filter(([name]) => !args.only || new RegExp(args.only).test(name)),
);
if (Object.keys(MODELS).length === 0) {
  console.error(`--only ${args.only} matches none of the models`);
  Deno.exit(2);
}

/** GB/s of a large device-to-device copy kernel (vec4, grid-stride), timed with timestamps. */
async function copyBandwidth(gpu: Gpu): Promise<number> {
  const dev = gpu.device;
  const bytes = Math.min(
    512 << 20,
    Math.floor(dev.limits.maxStorageBufferBindingSize / 2 / 16) * 16,
    args.quick ? 64 << 20 : 512 << 20,
  );
  const usage = GPUBufferUsage.STORAGE;
  const arena = gpu.arena("copy");
  const a = arena.buffer("copy src", bytes, usage | GPUBufferUsage.COPY_DST);
  const b = arena.buffer("copy dst", bytes, usage);
  // Random contents: zero-filled buffers can move faster than real data (memory compression).
  const chunk = new Uint32Array(Math.min(bytes, 16 << 20) / 4);
  let seed = 12345;
  for (let i = 0; i < chunk.length; i++) {
    chunk[i] = seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  }
  for (let off = 0; off < bytes; off += chunk.byteLength) {
    arena.write(a, chunk.subarray(0, Math.min(chunk.length, (bytes - off) / 4)), off);
  }
  const module = dev.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read> a: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> b: array<vec4f>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) n: vec3u) {
  let count = arrayLength(&a);
  for (var i = g.x; i < count; i += n.x * 256u) { b[i] = a[i]; }
}`,
  });
  const pipe = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const bg = dev.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: a } }, { binding: 1, resource: { buffer: b } }],
  });
  let best = 0;
  for (const groups of [4096, 16384, 65535]) {
    const { medianNs: ns } = await timePasses(gpu, 10, (pass) => {
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(groups);
    });
    best = Math.max(best, (2 * bytes) / ns);
  }
  arena.dispose();
  return best; // bytes per ns = GB/s
}

/** Stored bytes per weight; q8 and q4 carry an f16 scale per 32 weights: 8.5 and 4.5 bits. */
const BYTES_PER_WEIGHT = { f32: 4, f16: 2, q8: 1 + 2 / 32, q4: 0.5 + 2 / 32 } as const;

/**
 * Bytes of weights one decode step reads: every trunk layer, the final norm and the unembedding
 * (of the embedding only the block's rows, not counted); with heads, every head tensor and the
 * unembedding once more for the drafts.
 */
function weightBytesPerStep(model: Model, withHeads: boolean): number {
  const c = model.config;
  const bytes = (name: string) => {
    const p = model.placements.get(name)!;
    return p.shape.reduce((a, b) => a * b, 1) * BYTES_PER_WEIGHT[p.dtype];
  };
  const unembed = bytes(c.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  const names = model.tensorShapes().map(([n]) => n);
  const trunk = names.filter((n) => n.startsWith("model.layers.") || n === "model.norm.weight");
  let total = trunk.reduce((s, n) => s + bytes(n), 0) + unembed;
  if (withHeads) {
    const heads = names.filter((n) => !n.startsWith("model.") && n !== "lm_head.weight");
    total += heads.reduce((s, n) => s + bytes(n), 0) + unembed;
  }
  return total;
}

/**
 * A profile line: label family, microseconds with each launch repeated (caches warm from the
 * repeats), launches, weight bytes its launches read, microseconds with each launch once in step
 * order (the caches as the step leaves them).
 */
type ProfileRow = [string, number, number, number, number];

/** Weight bytes a matrix-product launch family reads (0 for other kernels). */
function matrixBytes(model: Model, kind: string): number {
  const tensors: Record<string, RegExp> = {
    "layer.qkv_proj": /^model\.layers\.\d+\.self_attn\.[qkv]_proj\.weight$/,
    "layer.o_proj": /^model\.layers\.\d+\.self_attn\.o_proj\.weight$/,
    "layer.gate_up_proj": /^model\.layers\.\d+\.mlp\.(gate|up)_proj\.weight$/,
    "layer.down_proj": /^model\.layers\.\d+\.mlp\.down_proj\.weight$/,
    "head1.lm_head": model.config.tieEmbeddings
      ? /^model\.embed_tokens\.weight$/
      : /^lm_head\.weight$/,
  };
  const re = tensors[kind];
  if (!re) return 0;
  let total = 0;
  for (const [name, p] of model.placements) {
    if (re.test(name)) total += p.shape.reduce((a, b) => a * b, 1) * BYTES_PER_WEIGHT[p.dtype];
  }
  return total;
}

/** GPU time per kernel label family over one decode step, each launch in its own timed pass. */
async function profileStep(model: Model, k: number): Promise<ProfileRow[]> {
  const session = new Session(model, { k, drafts: null, promptLength: PROMPT.length });
  try {
    session.start(PROMPT, { limit: model.config.maxSeqLen, stop: [] });
    const program = session.step;
    const gpu = model.gpu;
    const times: number[] = [];
    const reps = 20;
    for (const d of program) {
      const { medianNs } = await timePasses(gpu, 3, (pass) => {
        for (let r = 0; r < reps; r++) encode(pass, [d]);
      });
      times.push(medianNs / reps);
    }
    // Each launch once, in step order, in its own timed pass: what it takes inside a real step,
    // where a matrix smaller than the L2 cache is not left there by its own previous run.
    const inOrder: number[][] = program.map(() => []);
    for (let rep = 0; rep < 5; rep++) {
      const { ns } = await timePasses(gpu, program.length, (pass, i) => encode(pass, [program[i]]));
      ns.forEach((t, i) => inOrder[i].push(t));
    }
    const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
    const byKind = new Map<string, [number, number, number]>();
    program.forEach((d, i) => {
      const kind = d.label.replace(/^layers\.\d+\./, "layer.");
      const [t, n, o] = byKind.get(kind) ?? [0, 0, 0];
      byKind.set(kind, [t + times[i], n + 1, o + median(inOrder[i])]);
    });
    return [...byKind.entries()].map(([kind, [t, n, o]]) =>
      [kind, t / 1e3, n, matrixBytes(model, kind), o / 1e3] as ProfileRow
    )
      .sort((a, b) => b[1] - a[1]);
  } finally {
    session.dispose();
  }
}

interface Row {
  model: string;
  run: string;
  msPerStep: number;
  tokensPerStep: number;
  tokensPerSecond: number;
  gpuTokensPerSecond: number | null;
  weightGBps: number;
  pctCopy: number;
  dispatchesPerStep: number;
  hostSyncsPer100: number;
  speedup: number;
  /** tokens/s over the f16 model's greedy tokens/s (quantized rows of a model measured in f16 too). */
  vsF16: number | null;
  stats: GenerationStats;
}

const gpu0 = await createGpu();
const adapter = gpu0.adapterName;
if (!gpu0.hasTimestamps) {
  console.error("this GPU has no timestamp-query: the benchmark needs it");
  Deno.exit(1);
}
console.log(`GPU: ${adapter}`);
const copy = await copyBandwidth(gpu0);
gpu0.dispose();
console.log(`copy bandwidth: ${copy.toFixed(0)} GB/s`);

const rows: Row[] = [];
const profiles: Record<string, ProfileRow[]> = {};
for (const [name, config] of Object.entries(MODELS)) {
  const t0 = performance.now();
  let lastPct = -1;
  const progress = (done: number, total: number) => {
    const pct = Math.floor((100 * done) / total);
    if (pct >= lastPct + 10) {
      lastPct = pct;
      console.log(
        `  ${name}: ${typeof config === "string" ? "loading" : "initialising"} weights ${pct}%`,
      );
    }
  };
  const model = typeof config === "string"
    ? await loadModel(/^[a-z]+:/.test(config) ? new URL(config) : config, {
      maxSeqLen: TOKENS + 32,
      onProgress: (p) => progress(p.bytes, p.totalBytes),
    })
    : await createModel(config, { seed: 1, onProgress: progress });
  if (PROMPT.some((t) => t >= model.config.vocabSize)) {
    console.error(
      `${name}: the bench prompt uses ids up to 249; the model has ${model.config.vocabSize}`,
    );
    Deno.exit(2);
  }
  console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s to create`);
  try {
    // EOS ids of a loaded checkpoint would end runs early: every run has TOKENS tokens.
    const opts = { maxTokens: TOKENS, timestamps: true, ignoreEos: true };
    const hasHeads = model.config.nFuture > 1;
    await complete(model, PROMPT, { ...opts, maxTokens: 8 }); // compile pipelines
    await complete(model, PROMPT, { ...opts, maxTokens: 8, mode: "speculative" });
    const greedy = await complete(model, PROMPT, opts);
    const runs: [string, GenerationStats, boolean][] = [["greedy", greedy.stats, false]];
    if (hasHeads) {
      const heads = await complete(model, PROMPT, { ...opts, mode: "speculative" });
      if (heads.tokens.join() !== greedy.tokens.join()) throw new Error(`${name}: heads != greedy`);
      runs.push(["speculative, heads", heads.stats, true]);
    }
    const replay = await complete(model, PROMPT, {
      ...opts,
      mode: "speculative",
      blockSize: hasHeads ? model.config.nFuture : 4,
      drafts: replayDrafts(greedy.tokens),
    });
    if (replay.tokens.join() !== greedy.tokens.join()) throw new Error(`${name}: replay != greedy`);
    runs.push(["speculative, replay", replay.stats, false]);
    for (const [run, s, withHeads] of runs) {
      const sec = s.gpuDecodeSeconds ?? s.decodeSeconds;
      const msPerStep = (sec * 1000) / s.steps;
      const bytes = weightBytesPerStep(model, withHeads);
      const gbps = bytes / (msPerStep * 1e6);
      rows.push({
        model: name,
        run,
        msPerStep,
        tokensPerStep: s.tokensPerStep,
        tokensPerSecond: s.tokensPerSecond,
        gpuTokensPerSecond: s.gpuDecodeSeconds ? s.tokens / s.gpuDecodeSeconds : null,
        weightGBps: gbps,
        pctCopy: (100 * gbps) / copy,
        dispatchesPerStep: s.dispatchesPerStep,
        hostSyncsPer100: (100 * s.hostSyncs) / s.tokens,
        speedup: s.tokensPerSecond / greedy.stats.tokensPerSecond,
        vsF16: null,
        stats: s,
      });
    }
    profiles[`${name} greedy step`] = await profileStep(model, 1);
    profiles[`${name} 4-row verify step`] = await profileStep(model, 4);
  } finally {
    model.dispose();
  }
}

// Prefill and long context, on model (a)'s shape in f16 and q4 (quick: the tiny stand-in): the
// time to the first token of a 512-token prompt (session setup and prefill, best of 3), and greedy
// ms/step after prompts of 64, 512 and 4096 positions (GPU timestamps, 64 tokens each).
interface ContextRow {
  model: string;
  /** Prompt tokens per second of wall time to the first token, 512-token prompt. */
  prefillTokensPerSecond: number;
  prefillSeconds: number;
  /** [positions before decoding, ms/step] */
  msPerStepAt: [number, number][];
}
const contextRows: ContextRow[] = [];
{
  const base = Object.entries(benchModels(args.quick, TOKENS + 32))[0];
  const lengths = args.quick ? [64, 256] : [64, 512, 4096];
  const prefillLen = args.quick ? 256 : 512;
  const shapes = [[base[0], "f16"], [`${base[0]} q4`, "q4"]] as const;
  for (const [name, dtype] of shapes) {
    if (args.only && !new RegExp(args.only).test(name)) continue;
    if (args.model) break;
    const config = {
      ...(base[1] as ModelConfigInput),
      dtype,
      maxSeqLen: Math.max(...lengths) + 80,
    };
    const model = await createModel(config, { seed: 1 });
    try {
      const v = model.config.vocabSize;
      const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i * 37 + 11) % v);
      const opts = { timestamps: true, ignoreEos: true };
      let best = Infinity;
      for (let i = 0; i < 4; i++) { // the first run compiles the tiled pipelines
        const r = await complete(model, prompt(prefillLen), { ...opts, maxTokens: 1 });
        if (i > 0) best = Math.min(best, r.stats.prefillSeconds);
      }
      const at: [number, number][] = [];
      for (const n of lengths) {
        await complete(model, prompt(n), { ...opts, maxTokens: 8 });
        const r = await complete(model, prompt(n), { ...opts, maxTokens: 64 });
        const sec = r.stats.gpuDecodeSeconds ?? r.stats.decodeSeconds;
        at.push([n, (sec * 1000) / r.stats.steps]);
      }
      contextRows.push({
        model: name,
        prefillTokensPerSecond: prefillLen / best,
        prefillSeconds: best,
        msPerStepAt: at,
      });
      console.log(`${name}: prefill ${prefillLen} tokens in ${(best * 1000).toFixed(1)} ms`);
    } finally {
      model.dispose();
    }
  }
}

// Quantized models against the same shape in f16, greedy against greedy, from this run.
for (const r of rows) {
  const base = rows.find((f) => f.model === r.model.replace(/ q[48]$/, "") && f.run === "greedy");
  if (base && base !== r && r.model !== base.model) {
    r.vsF16 = r.tokensPerSecond / base.tokensPerSecond;
  }
}

/** A PyTorch peer on model (a): tokens/s from its script's JSON, beside our greedy row. */
interface PeerRow {
  run: string;
  tokensPerSecond: number;
  /** ahead's greedy tokens/s divided by the peer's. */
  aheadVsPeer: number;
}
const peers: PeerRow[] = [];
const peerJson: Record<string, unknown> = {};
if (args.peers) {
  const ours = rows.find((r) => r.run === "greedy")!.tokensPerSecond;
  const runPeer = async (script: string) => {
    const out = await Deno.makeTempFile({ suffix: ".json" });
    console.log(`running ${script} ...`);
    const r = await new Deno.Command("python3", {
      args: [script, "--tokens", String(TOKENS), "--json", out],
      env: { PYTHONUNBUFFERED: "1" },
    }).output();
    if (!r.success) throw new Error(`${script} failed:\n${new TextDecoder().decode(r.stderr)}`);
    const j = JSON.parse(await Deno.readTextFile(out));
    peerJson[script] = j;
    return j;
  };
  const hf = await runPeer("bench/hf_peer.py");
  for (const cache of ["dynamic", "static"]) {
    const tps = hf[cache].tokensPerSecond;
    peers.push({
      run: `HF transformers, ${cache} cache`,
      tokensPerSecond: tps,
      aheadVsPeer: ours / tps,
    });
  }
  const graph = await runPeer("bench/torch_graph_peer.py");
  const tps = graph.best.tokensPerSecond;
  peers.push({
    run: "PyTorch, one CUDA graph per step",
    tokensPerSecond: tps,
    aheadVsPeer: ours / tps,
  });
}

const table = [
  `GPU: ${adapter}; copy bandwidth ${
    copy.toFixed(0)
  } GB/s; ${TOKENS} tokens after a ${PROMPT.length}-token prompt`,
  "",
  "| model | run | ms/step | tokens/step | tokens/s | x greedy | x f16 | weight GB/s | % of copy | dispatches/step | host syncs/100 tok |",
  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ...rows.map((r) =>
    `| ${r.model} | ${r.run} | ${r.msPerStep.toFixed(3)} | ${r.tokensPerStep.toFixed(2)} | ${
      r.tokensPerSecond.toFixed(0)
    } | ${r.speedup.toFixed(2)} | ${r.vsF16 === null ? "" : r.vsF16.toFixed(2)} | ${
      r.weightGBps.toFixed(0)
    } | ${r.pctCopy.toFixed(1)} | ${r.dispatchesPerStep} | ${r.hostSyncsPer100.toFixed(1)} |`
  ),
  ...(peers.length === 0 ? [] : [
    "",
    `PyTorch peers on model (a), greedy, same GPU, same run (x = ahead greedy tokens/s / peer's):`,
    "",
    "| peer | tokens/s | ahead greedy vs peer |",
    "| --- | ---: | ---: |",
    ...peers.map((p) =>
      `| ${p.run} | ${p.tokensPerSecond.toFixed(0)} | ${p.aheadVsPeer.toFixed(2)}x |`
    ),
  ]),
];
if (contextRows.length > 0) {
  const ls = contextRows[0].msPerStepAt.map(([n]) => n);
  table.push(
    "",
    `Prefill (wall time to the first token, best of 3) and greedy decode after long prompts:`,
    "",
    `| model | prefill tokens/s | time to first token, ms | ${
      ls.map((n) => `ms/step at ${n}`).join(" | ")
    } | at ${ls[ls.length - 1]} vs at ${ls[0]} |`,
    `| --- | ---: | ---: | ${ls.map(() => "---:").join(" | ")} | ---: |`,
    ...contextRows.map((r) =>
      `| ${r.model} | ${r.prefillTokensPerSecond.toFixed(0)} | ${
        (r.prefillSeconds * 1000).toFixed(1)
      } | ${r.msPerStepAt.map(([, m]) => m.toFixed(3)).join(" | ")} | ${
        (r.msPerStepAt[r.msPerStepAt.length - 1][1] / r.msPerStepAt[0][1]).toFixed(2)
      }x |`
    ),
  );
}
console.log("\n" + table.join("\n"));
for (const [k, p] of Object.entries(profiles)) {
  const total = p.reduce((s, [, t]) => s + t, 0);
  const once = p.reduce((s, r) => s + r[4], 0);
  const launches = p.reduce((s, [, , n]) => s + n, 0);
  console.log(
    `\nprofile, ${k}: each launch repeated 20 times in one pass (launch gaps included): ${
      total.toFixed(1)
    } us; each launch once in step order, a pass each: ${once.toFixed(1)} us; ${launches} launches`,
  );
  const gbps = (bytes: number, us: number) =>
    bytes > 0
      ? `, ${(bytes / us / 1e3).toFixed(0)} GB/s = ${(100 * bytes / us / 1e3 / copy).toFixed(0)}%`
      : "";
  for (const [kind, t, n, bytes, o] of p.slice(0, 12)) {
    console.log(
      `  ${kind.padEnd(28)} repeated ${t.toFixed(1).padStart(7)} us${gbps(bytes, t)}; ` +
        `in order ${o.toFixed(1).padStart(7)} us${gbps(bytes, o)} (${n} launches)`,
    );
  }
}
// The cost model: step time = kernel time in step order + launches x the gap between launches.
for (const r of rows.filter((r) => r.run === "greedy")) {
  const p = profiles[`${r.model} greedy step`];
  if (!p) continue;
  const once = p.reduce((s, x) => s + x[4], 0);
  const gap = (r.msPerStep * 1e3 - once) / r.dispatchesPerStep;
  console.log(
    `cost model, ${r.model} greedy: ${(r.msPerStep * 1e3).toFixed(0)} us/step = ${
      once.toFixed(0)
    } us of kernels (in step order) + ${r.dispatchesPerStep} launches x ${gap.toFixed(2)} us`,
  );
}
if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify(
      {
        adapter,
        copyGBps: copy,
        tokens: TOKENS,
        prompt: PROMPT.length,
        models: MODELS,
        rows,
        peers,
        peerResults: peerJson,
        context: contextRows,
        profiles,
      },
      null,
      2,
    ),
  );
  console.log(`\nwrote ${args.json}`);
}
