/**
 * Trains a multi-token model on text: from scratch (trunk and heads together), or heads only on
 * a frozen trunk loaded from a Hugging Face folder (Medusa-1 style). From scratch is byte-level:
 * the vocabulary is the 256 bytes, so no tokenizer has to be trained or shipped, code keeps its
 * exact whitespace, and Meta's byte-level model is where multi-token prediction paid off most.
 * Heads only uses the loaded model's own tokenizer.json. With --distil the heads learn from the
 * trunk's own greedy continuations of prompts cut from the data (Medusa's self-distillation, for
 * models whose training data are unknown) rather than from the text itself.
 *
 *     deno task train --data data/corpus/train --heldout data/corpus/heldout --out models/run1
 *     deno task train --resume models/run1 --steps 4000          # continue a run
 *     deno task train --model DIR --heads-only --heads 4 --data ... --out DIR2
 *     deno task train --model DIR --heads-only --distil 2000 --data ... --out DIR3   # self-distil
 *
 * Shows a progress bar (loss per head, tokens/s, ETA) on stderr, evaluates the held-out loss,
 * and writes a checkpoint (model + optimizer state) every --checkpoint-every steps and at the
 * end; --time-limit S stops cleanly (with a checkpoint) after S seconds, for runs of bounded
 * length that resume where the last one stopped.
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { z } from "zod";
import {
  byteTokenizer,
  complete,
  createModel,
  InvalidInputError,
  loadModel,
  type Model,
  type Tokenizer,
} from "../mod.ts";
import { TrainProgram } from "../train/program.ts";
import { batchSampler, heldoutBatches, loadCorpus } from "../train/data.ts";
import { evaluate, trainSteps } from "../train/trainer.ts";
import { restoreOptimizer, saveCheckpoint } from "../train/checkpoint.ts";
import { initForTraining } from "../train/init.ts";
import { distilledStream } from "../train/distil.ts";

const HELP = `Usage: deno task train [options]

Data and output:
  --data PATH[,PATH]     text files or folders to train on (required unless --resume)
  --heldout PATH[,PATH]  files or folders held out for the held-out loss (default: 5% of --data)
  --out DIR              checkpoint folder (default: the --resume folder)
  --resume DIR           continue from a checkpoint (model, optimizer state, step)
Model (from scratch):
  --d-model N --layers N --n-heads N --kv-heads N --d-ff N   (default 256, 6, 8, 4, 768)
  --heads N              output heads, next-token head included (default 4)
  --head-kind K          transformer (a layer per head, Meta's), medusa (a ResBlock per head), or
                         sequential (MTP modules as DeepSeek-V3 and MiMo: module k reads depth
                         k - 1's hidden state and token t+k's embedding; --heads-only)
  --mtp-layout L         sequential: mimo (default) or deepseek tensor names and input order
  --own-unembedding      medusa: each head its own unembedding (heads only: a copy of lm_head)
  --seq-len N            tokens per sequence (default 256)
Heads only:
  --model DIR            a Hugging Face folder whose trunk stays frozen
  --heads-only           train only heads 2..n
  --distil N             self-distil: train the heads on N continuations that the frozen trunk
                         generates greedily from prompts cut from --data (default 0: real text)
  --distil-prompt N      tokens of real text per prompt (default 64)
  --distil-tokens N      tokens generated per prompt (default --seq-len minus the prompt)
Optimization:
  --steps N --batch N --lr X --min-lr X --warmup N --weight-decay X --clip X --seed N
  --log-every N --eval-every N --checkpoint-every N --time-limit SECONDS
`;

const int = (flag: string, min = 1) =>
  z.coerce.number({ error: `${flag} must be an integer` }).int({
    error: `${flag} must be an integer`,
  })
    .min(min, { error: `${flag} must be >= ${min}` });
const num = (flag: string) =>
  z.coerce.number({ error: `${flag} must be a number` }).min(0, { error: `${flag} must be >= 0` });
const paths = z.string().transform((s) => s.split(",").filter((p) => p));

const Args = z.object({
  data: paths.optional(),
  heldout: paths.optional(),
  out: z.string().optional(),
  resume: z.string().optional(),
  dModel: int("--d-model", 8),
  layers: int("--layers"),
  nHeads: int("--n-heads"),
  kvHeads: int("--kv-heads"),
  dFf: int("--d-ff", 8),
  heads: int("--heads"),
  headKind: z.enum(["transformer", "medusa", "sequential"], {
    error: "--head-kind must be transformer, medusa or sequential",
  }),
  mtpLayout: z.enum(["mimo", "deepseek"], { error: "--mtp-layout must be mimo or deepseek" }),
  ownUnembedding: z.boolean(),
  seqLen: int("--seq-len", 2),
  model: z.string().optional(),
  headsOnly: z.boolean(),
  distil: int("--distil", 0),
  distilPrompt: int("--distil-prompt"),
  distilTokens: int("--distil-tokens").optional(),
  steps: int("--steps"),
  batch: int("--batch"),
  lr: num("--lr"),
  minLr: num("--min-lr"),
  warmup: int("--warmup", 0),
  weightDecay: num("--weight-decay"),
  clip: num("--clip"),
  seed: int("--seed", 0),
  logEvery: int("--log-every"),
  evalEvery: int("--eval-every"),
  checkpointEvery: int("--checkpoint-every"),
  timeLimit: num("--time-limit").optional(),
});

/** The tokenizer to train with: the model's own (tokenizer.json), or bytes for a 256-id model. */
function tokenizerOf(m: Model, where: string): Tokenizer {
  if (m.tokenizer) return m.tokenizer;
  if (m.config.vocabSize === 256) return byteTokenizer();
  throw new InvalidInputError(
    `${where} has no tokenizer.json and ${m.config.vocabSize} ids, so its text cannot be ` +
      `encoded: copy the model's tokenizer.json into the folder`,
  );
}

/** Identifies a tokenizer across copies of its files: its size and the ids of a probe text. */
function fingerprint(t: Tokenizer): string {
  if (t.source === byteTokenizer().source) return "bytes";
  const ids = t.encode("function f(x) { return x * 2; } // héllo, 世界\n", {
    addSpecialTokens: false,
  });
  let h = 0x811c9dc5;
  for (const id of ids) h = Math.imul(h ^ id, 0x01000193) >>> 0;
  return `${t.vocabSize} ids, probe ${h.toString(16)}`;
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: "string" },
      heldout: { type: "string" },
      out: { type: "string" },
      resume: { type: "string" },
      "d-model": { type: "string", default: "256" },
      layers: { type: "string", default: "6" },
      "n-heads": { type: "string", default: "8" },
      "kv-heads": { type: "string", default: "4" },
      "d-ff": { type: "string", default: "768" },
      heads: { type: "string", default: "4" },
      "head-kind": { type: "string", default: "transformer" },
      "mtp-layout": { type: "string", default: "mimo" },
      "own-unembedding": { type: "boolean", default: false },
      "seq-len": { type: "string", default: "256" },
      model: { type: "string" },
      "heads-only": { type: "boolean", default: false },
      distil: { type: "string", default: "0" },
      "distil-prompt": { type: "string", default: "64" },
      "distil-tokens": { type: "string" },
      steps: { type: "string", default: "2000" },
      batch: { type: "string", default: "16" },
      lr: { type: "string", default: "3e-3" },
      "min-lr": { type: "string", default: "3e-4" },
      warmup: { type: "string", default: "100" },
      "weight-decay": { type: "string", default: "0.1" },
      clip: { type: "string", default: "1" },
      seed: { type: "string", default: "0" },
      "log-every": { type: "string", default: "20" },
      "eval-every": { type: "string", default: "500" },
      "checkpoint-every": { type: "string", default: "500" },
      "time-limit": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const camel = Object.fromEntries(
    Object.entries(values).map((
      [k, v],
    ) => [k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()), v]),
  );
  const r = Args.safeParse(camel);
  if (!r.success) {
    console.error(`error: ${r.error.issues.map((i) => i.message).join("; ")}\n\n${HELP}`);
    Deno.exit(2);
  }
  const a = r.data;
  const fail = (m: string) => {
    console.error(`error: ${m}\n\n${HELP}`);
    Deno.exit(2);
  };
  if (!a.data && !a.resume) fail("--data is required (or --resume a checkpoint)");
  if (!a.out && !a.resume) fail("--out is required (or --resume a checkpoint)");
  if (a.headsOnly && !a.model && !a.resume) fail("--heads-only needs --model (the frozen trunk)");
  if (a.headKind === "sequential" && !a.headsOnly && !a.resume) {
    fail(
      "--head-kind sequential trains MTP modules on a frozen trunk: add --heads-only --model DIR",
    );
  }
  if (a.ownUnembedding && a.headKind !== "medusa") {
    fail("--own-unembedding is for --head-kind medusa");
  }
  if (a.distil > 0 && !a.headsOnly) {
    fail("--distil needs --heads-only: a trunk that is still learning cannot teach its heads");
  }
  return a;
}

if (import.meta.main) {
  const args = parse(Deno.args);
  const out = args.out ?? args.resume!;
  let tok: Tokenizer = byteTokenizer();
  let model: Model | null = null;
  try {
    const runInfoFile = args.resume ? join(args.resume, "run.json") : null;
    const saved = runInfoFile ? JSON.parse(await Deno.readTextFile(runInfoFile)) : null;
    const data = args.data ?? saved?.data;
    const heldout = args.heldout ?? saved?.heldout;
    if (args.resume) {
      model = await loadModel(args.resume, { dtype: "f32", onWarning: () => {} });
      tok = tokenizerOf(model, args.resume);
    } else if (args.model) {
      const base = await loadModel(args.model, { dtype: "f32", onWarning: () => {} });
      tok = tokenizerOf(base, args.model);
      // A model with heads: the loaded trunk's tensors, and new heads initialised for training
      // (norms 1, residual-writing projections small, so each starts near the trunk's own
      // next-token prediction).
      const { mtpDepth: _, ...trunkConfig } = base.config;
      model = await createModel({
        ...trunkConfig,
        nFuture: args.heads,
        headKind: args.headKind,
        headsOwnUnembedding: args.ownUnembedding,
        ...(args.headKind === "sequential" ? { mtpLayout: args.mtpLayout } : {}),
      }, { seed: args.seed });
      initForTraining(model, args.seed);
      const wanted = new Set([...model.tensorShapes()].map(([name]) => name));
      for (const [name] of base.tensorShapes()) {
        if (wanted.has(name) && !/^(mtp_heads|medusa_head)\./.test(name)) {
          model.setTensor(name, await base.getTensor(name));
        }
      }
      if (args.ownUnembedding) {
        // Medusa's recipe: each head's unembedding starts as a copy of the trunk's.
        const lmHead = await base.getTensor(
          base.config.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight",
        );
        for (let j = 0; j < args.heads - 1; j++) {
          model.setTensor(`medusa_head.${j}.1.weight`, lmHead);
        }
      }
      base.dispose();
    } else {
      model = await createModel({
        vocabSize: 256,
        dModel: args.dModel,
        nLayers: args.layers,
        nHeads: args.nHeads,
        nKvHeads: args.kvHeads,
        dFF: args.dFf,
        maxSeqLen: Math.max(2048, args.seqLen),
        nFuture: args.heads,
        headKind: args.headKind,
        headsOwnUnembedding: args.ownUnembedding,
        tieEmbeddings: true,
        dtype: "f32",
      }, { seed: args.seed });
      initForTraining(model, args.seed);
    }
    const bytes = tok.source === byteTokenizer().source;
    const separator = bytes ? 0 : tok.eosIds[0] ?? model.eosIds[0] ?? 0;
    const tokenizerId = fingerprint(tok);
    model.tokenizer = tok;
    if (bytes) model.eosIds = [0];
    const c = model.config;
    const corpus = await loadCorpus(tok, { train: data, heldout, separator });
    const seqLen = saved?.seqLen ?? args.seqLen;
    // A resumed run regenerates the same continuations: same seed, same frozen trunk.
    const distil = saved?.distil ?? (args.distil > 0
      ? {
        samples: args.distil,
        promptLen: args.distilPrompt,
        tokens: args.distilTokens ?? Math.max(1, seqLen - args.distilPrompt),
        seed: args.seed,
      }
      : null);
    if (distil) {
      const limit = c.maxSeqLen - distil.promptLen;
      if (distil.tokens > limit) {
        throw new Error(
          `--distil-tokens ${distil.tokens} plus the prompt exceed the model's maxSeqLen ` +
            `${c.maxSeqLen}: give at most ${limit}`,
        );
      }
      const t0 = performance.now();
      const m = model;
      corpus.train = await distilledStream(
        corpus.train,
        {
          ...distil,
          separator,
          onProgress: (done, generated) => {
            const s = (performance.now() - t0) / 1000;
            const eta = (distil.samples - done) * s / done;
            Deno.stderr.writeSync(new TextEncoder().encode(
              `\rself-distillation: ${done}/${distil.samples} continuations, ` +
                `${(generated / s).toFixed(0)} tok/s, ETA ${eta.toFixed(0)} s\x1b[K`,
            ));
          },
        },
        async (p) => (await complete(m, p, { maxTokens: distil.tokens, ignoreEos: true })).tokens,
      );
      console.error(`\nself-distillation: ${corpus.train.length} tokens to train the heads on`);
    }
    const batch = saved?.batch ?? args.batch;
    const totalSteps = args.steps;
    // A resumed run keeps its hyperparameters; --steps sets where it ends.
    const opt = saved?.optimizer ??
      {
        lr: args.lr,
        minLr: args.minLr,
        warmup: args.warmup,
        weightDecay: args.weightDecay,
        clip: args.clip,
      };
    const program = new TrainProgram(model, {
      batch,
      seqLen,
      trainTrunk: !(args.headsOnly || saved?.headsOnly),
      optimizer: {
        schedule: {
          maxLr: opt.lr,
          minLr: opt.minLr,
          warmupSteps: Math.min(opt.warmup, totalSteps),
          totalSteps,
        },
        weightDecay: opt.weightDecay,
        maxNorm: opt.clip,
      },
    });
    let from = 0;
    if (args.resume) {
      from = (await restoreOptimizer(program, args.resume, { tokenizer: tokenizerId })).step;
    }
    const o = { batch, seqLen, nFuture: c.nFuture, seed: args.seed };
    const batchAt = batchSampler(corpus.train, o);
    const held = heldoutBatches(corpus.heldout, { ...o, maxBatches: 8 });
    console.error(
      `training ${c.nLayers} layers, d${c.dModel}, ${c.nFuture} heads on ${model.adapterName}: ` +
        `${corpus.train.length} training and ${corpus.heldout.length} held-out tokens ` +
        `(${corpus.files.train} / ${corpus.files.heldout} files), steps ${from}..${totalSteps}, ` +
        `batch ${batch} x ${seqLen}`,
    );
    const history: {
      step: number;
      train: number[];
      heldout?: number[];
      tokensPerSecond: number;
    }[] = saved?.history ?? [];
    const runJson = {
      data,
      heldout,
      seqLen,
      batch,
      optimizer: opt,
      headsOnly: args.headsOnly || !!saved?.headsOnly,
      distil,
      command: `deno task train ${Deno.args.join(" ")}`,
      history,
    };
    const save = async (step: number) => {
      const h = held.length ? await evaluate(program, held) : undefined;
      if (h) {
        history.push({ step, train: history.at(-1)?.train ?? [], heldout: h, tokensPerSecond: 0 });
      }
      await saveCheckpoint(program, out, { step, tokenizer: tokenizerId });
      await Deno.writeTextFile(join(out, "run.json"), JSON.stringify(runJson, null, 2) + "\n");
      if (h) {
        console.error(
          `\nstep ${step}: held-out loss per head ${h.map((x) => x.toFixed(3)).join(" ")}`,
        );
      }
    };
    const enc = new TextEncoder();
    const r = await trainSteps(program, {
      from,
      to: totalSteps,
      batchAt,
      logEvery: args.logEvery,
      timeLimit: args.timeLimit,
      checkpointEvery: args.checkpointEvery,
      onCheckpoint: save,
      onLog: (l) => {
        history.push({ step: l.step, train: l.losses, tokensPerSecond: l.tokensPerSecond });
        const eta = (totalSteps - l.step) * program.rows / Math.max(1, l.tokensPerSecond);
        Deno.stderr.writeSync(enc.encode(
          `\rstep ${l.step}/${totalSteps} loss ${l.losses.map((x) => x.toFixed(3)).join(" ")} ` +
            `lr ${l.lr.toExponential(1)} |g| ${l.gradNorm.toFixed(2)} ` +
            `${(l.tokensPerSecond / 1000).toFixed(1)}k tok/s ETA ${eta.toFixed(0)} s\x1b[K`,
        ));
      },
    });
    console.error(
      `\n${
        r.stopped === "nan"
          ? "stopped: the gradient became NaN or infinite (lower --lr); the last checkpoint is kept"
          : r.stopped === "time"
          ? `stopped at the time limit after step ${r.step}; resume with --resume ${out}`
          : `done: ${r.step} steps`
      }`,
    );
    program.dispose();
    if (r.stopped === "nan") Deno.exitCode = 1;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exitCode = 1;
  } finally {
    model?.dispose();
  }
}
