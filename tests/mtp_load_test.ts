// Loading released MTP checkpoints: MiMo (model_type mimo, model.mtp_layers.*) and the
// DeepSeek-V3 layout on a supported trunk (model.layers.{L + i}.{enorm, hnorm, eh_proj, ...}),
// as their config.json and tensor names come, and every way such a folder can be wrong.
import assert from "node:assert/strict";
import { join } from "node:path";
import { CheckpointError } from "../gpu/errors.ts";
import { forward } from "../heads/forward.ts";
import { createModel } from "../heads/model.ts";
import { complete } from "../decode/generate.ts";
import { loadModel, type LoadModelOptions } from "../io/load.ts";
import { saveModel } from "../io/save.ts";
import { openCheckpoint, type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import type { ModelConfigInput } from "../model/config.ts";
import { randomTokens, tiny } from "./helpers.ts";

const PROMPT = randomTokens(9, 67, 8);

const temps: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const d of temps) Deno.removeSync(d, { recursive: true });
});

/**
 * A folder as the release ships it: the model's tensors (changed by `tensors`) and a config.json
 * with no `ahead` section, changed by `config`. Returns it with the model's logits.
 */
async function released(
  config: ModelConfigInput,
  edit: {
    config: (j: Record<string, unknown>) => void;
    tensors?: (t: TensorToWrite[]) => TensorToWrite[];
  },
): Promise<{ dir: string; logits: Float32Array[] }> {
  const model = await createModel(config, { seed: 4 });
  const dir = await Deno.makeTempDir({ prefix: "mtp_load_test_" });
  temps.push(dir);
  try {
    await saveModel(model, dir);
    const logits = await forward(model, PROMPT);
    const json = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    delete json.ahead;
    edit.config(json);
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(json));
    if (edit.tensors) {
      const ckpt = await openCheckpoint(dir);
      const all: TensorToWrite[] = [];
      for (const t of ckpt.tensors.values()) {
        all.push({
          name: t.name,
          dtype: t.dtype as "F32",
          shape: t.shape,
          data: await ckpt.read(t.name),
        });
      }
      ckpt.close();
      await writeSafetensors(join(dir, "model.safetensors"), edit.tensors(all));
    }
    return { dir, logits };
  } finally {
    model.dispose();
  }
}

/** A MiMo-7B-like release: Qwen2 trunk, one MTP module, the sliding window declared but off. */
const mimo = (tensors?: (t: TensorToWrite[]) => TensorToWrite[]) =>
  released(tiny({ qkvBias: true, headKind: "sequential", nFuture: 2 }), {
    config: (j) => {
      j.model_type = "mimo";
      j.architectures = ["MiMoForCausalLM"];
      j.num_nextn_predict_layers = 1;
      j.use_sliding_window = false;
      j.sliding_window = 32;
    },
    tensors,
  });

/** The DeepSeek-V3 layout on a Llama trunk, two modules, with the shared copies it ships. */
const deepseek = (tensors?: (t: TensorToWrite[]) => TensorToWrite[]) =>
  released(tiny({ headKind: "sequential", mtpLayout: "deepseek", nFuture: 3 }), {
    config: (j) => {
      j.num_nextn_predict_layers = 2;
    },
    tensors: (t) => {
      const embed = t.find((x) => x.name === "model.embed_tokens.weight")!;
      const head = t.find((x) => x.name === "lm_head.weight")!;
      const copies = [2, 3].flatMap((l) => [
        { ...embed, name: `model.layers.${l}.embed_tokens.weight` },
        { ...head, name: `model.layers.${l}.shared_head.head.weight` },
      ]);
      return (tensors ?? ((x) => x))([...t, ...copies]);
    },
  });

async function refused(dir: string, patterns: RegExp[], options: LoadModelOptions = {}) {
  await assert.rejects(() => loadModel(dir, { ...options, onWarning: () => {} }), (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected a CheckpointError, got ${e}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

Deno.test("loadModel() reads a MiMo release (model_type mimo): its MTP module drafts, with the original's logits", async () => {
  const { dir, logits } = await mimo();
  const warnings: string[] = [];
  const model = await loadModel(dir, { onWarning: (m) => warnings.push(m) });
  try {
    assert.deepEqual(warnings, []);
    const c = model.config;
    assert.equal(c.headKind, "sequential");
    assert.equal(c.mtpLayout, "mimo");
    assert.equal(c.nFuture, 2);
    assert.equal(c.qkvBias, true);
    const again = await forward(model, PROMPT);
    for (let h = 0; h < 2; h++) assert.deepEqual(again[h], logits[h], `head ${h + 1}`);
    const greedy = await complete(model, PROMPT, { maxTokens: 12 });
    const spec = await complete(model, PROMPT, {
      maxTokens: 12,
      mode: "speculative",
      blockSize: 3,
    });
    assert.deepEqual(spec.tokens, greedy.tokens);
  } finally {
    model.dispose();
  }
});

Deno.test("loadModel() reads the DeepSeek-V3 MTP layout on a Llama trunk, leaving its shared copies unused and unwarned", async () => {
  const { dir, logits } = await deepseek();
  const warnings: string[] = [];
  const model = await loadModel(dir, { onWarning: (m) => warnings.push(m), mtpDepth: 5 });
  try {
    assert.deepEqual(warnings, []);
    assert.equal(model.config.mtpLayout, "deepseek");
    assert.equal(model.config.nFuture, 3);
    assert.equal(model.config.mtpDepth, 5);
    const again = await forward(model, PROMPT);
    for (let h = 0; h < 3; h++) assert.deepEqual(again[h], logits[h], `head ${h + 1}`);
  } finally {
    model.dispose();
  }
});

Deno.test("loadModel() refuses a config that declares MTP modules the weights do not hold, and { mtp: false } loads the trunk", async () => {
  const { dir, logits } = await mimo((t) =>
    t.filter((x) => !x.name.startsWith("model.mtp_layers."))
  );
  await refused(dir, [/config\.json/, /num_nextn_predict_layers = 1/, /hold none/, /mtp: false/]);
  const model = await loadModel(dir, { mtp: false });
  try {
    assert.equal(model.config.nFuture, 1);
    assert.deepEqual((await forward(model, PROMPT))[0], logits[0]);
  } finally {
    model.dispose();
  }
});

Deno.test("loadModel() refuses a half-present MTP layout, naming the layout and the missing tensors", async () => {
  const gone = "model.layers.3.eh_proj.weight";
  const { dir } = await deepseek((t) => t.filter((x) => x.name !== gone));
  await refused(dir, [
    /DeepSeek-V3/,
    /only partly present/,
    new RegExp(gone.replaceAll(".", "\\.")),
  ]);
});

Deno.test("loadModel() refuses MTP tensors whose shape disagrees with the config, naming tensor and shapes", async () => {
  const bad = "model.mtp_layers.0.input_proj.weight";
  const { dir } = await mimo((t) =>
    t.map((x) => x.name === bad ? { ...x, shape: [48, 24], data: x.data } : x)
  );
  await refused(dir, [new RegExp(bad.replaceAll(".", "\\.")), /\[48,24\]/, /\[24,48\]/]);
});

Deno.test("loadModel() refuses mtpDepth outside [1, 7], naming the field and the checkpoint", async () => {
  const { dir } = await mimo();
  for (const mtpDepth of [0, 8, 2.5]) {
    await refused(dir, [/config\.json/, /mtpDepth/, /\[1, 7\]|integer/], { mtpDepth });
  }
});

Deno.test("loadModel() names the trunk it does not run for MTP releases of DeepSeek-V3, GLM-4.5 and Qwen3-Next", async () => {
  const cases = [
    ["deepseek_v3", /multi-head latent attention/],
    ["glm4_moe", /mixture-of-experts/],
    ["qwen3_next", /Gated DeltaNet/],
  ] as const;
  for (const [modelType, why] of cases) {
    const { dir } = await released(tiny({ nFuture: 1 }), {
      config: (j) => {
        j.model_type = modelType;
        j.num_nextn_predict_layers = 1;
      },
    });
    await refused(dir, [new RegExp(`"${modelType}"`), /MTP modules/, why]);
  }
  // Qwen3-Next naming (mtp.fc, mtp.layers.*) under a trunk ahead runs.
  const { dir } = await released(tiny({ nFuture: 1 }), {
    config: () => {},
    tensors: (
      t,
    ) => [...t, { ...t.find((x) => x.name === "model.norm.weight")!, name: "mtp.norm.weight" }],
  });
  await refused(dir, [/Qwen3-Next/, /mtp\.fc/, /Gated DeltaNet/]);
});
