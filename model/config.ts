/**
 * The model configuration: one documented list of fields ({@link ModelConfig}) and one table
 * keyed by it that gives each field its zod schema (validation, defaults and error messages)
 * and its Hugging Face config.json key ({@link HF_CONFIG_KEYS}, for the loader). The compiler keeps
 * the two in step; the README's field table is generated from the list by `deno task gen`.
 * @module
 */
import { z } from "zod";
import { ConfigError, describeValue } from "../gpu/errors.ts";
import { MAX_FUTURE } from "../kernels/state.ts";
import type { RopeScaling } from "../kernels/rope_kv.ts";

export type { RopeScaling };

/** A validated configuration with every default and derived size filled in. */
export interface ModelConfig {
  /** Number of token ids, in [2, 2^20]. */
  vocabSize: number;
  /** Width of the residual stream, a multiple of 8. */
  dModel: number;
  /** Number of trunk layers, in [1, 256]. */
  nLayers: number;
  /** Number of query heads. */
  nHeads: number;
  /** Number of key/value heads; divides nHeads (grouped-query attention). Default nHeads. */
  nKvHeads: number;
  /** Width of one attention head, a multiple of 4, at most 256. Default dModel / nHeads. */
  headDim: number;
  /** Hidden width of the SwiGLU feed-forward block, a multiple of 8. */
  dFF: number;
  /** Longest sequence, prompt included: the KV cache holds this many positions. */
  maxSeqLen: number;
  /** RoPE base frequency (Llama 2: 10000; Llama 3: 500000). Default 10000. */
  ropeTheta: number;
  /** RMSNorm epsilon, in (0, 1]. Default 1e-5. */
  normEps: number;
  /** The unembedding reuses the token embedding matrix. Default false. */
  tieEmbeddings: boolean;
  /** Output heads, head 1 (the next token) included, in [1, 8]. Default 4. */
  nFuture: number;
  /**
   * Kind of heads 2..nFuture: "transformer" (Meta MTP), "medusa", or "sequential" (the MTP
   * modules of DeepSeek-V3, MiMo and GLM: head k + 1 is module k). Default "transformer".
   */
  headKind: string;
  /**
   * Tensor layout of sequential MTP modules: "mimo" (`model.mtp_layers.{i}.*`, input [hidden;
   * token]) or "deepseek" (`model.layers.{nLayers + i}.*`, input [token; hidden], as GLM-4.5
   * too). Default "mimo".
   */
  mtpLayout: "mimo" | "deepseek";
  /**
   * Drafts per step of sequential MTP modules, in [1, 7]; past the trained modules (nFuture - 1)
   * the last one is applied again. Default nFuture - 1 (always, for other kinds).
   */
  mtpDepth: number;
  /**
   * Storage type of the weight matrices; activations are always f32. "q8" and "q4" quantize
   * them in blocks of 32 weights with an f16 scale each (GGUF's Q8_0 and Q4_0 rules), on the GPU
   * from whatever a checkpoint holds; the embedding stays f16. Default "f32".
   */
  dtype: "f32" | "f16" | "q8" | "q4";
  /**
   * Storage type of the KV cache: "f16" halves what decode attention reads at long context
   * (keys and values are rounded to f16 as they are stored; attention still computes in f32).
   * Default "f16" for f16, q8 and q4 weights, "f32" for f32 weights.
   */
  kvDtype: "f32" | "f16";
  /** q, k and v projections have biases (Qwen2; Llama with attention_bias). Default false. */
  qkvBias: boolean;
  /** The output projection has a bias (Llama with attention_bias). Default false. */
  oBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE, weights [headDim] each (Qwen3). Default false. */
  qkNorm: boolean;
  /** RoPE frequency scaling (Llama 3 "llama3", or "linear"); null for none. Default null. */
  ropeScaling: RopeScaling | null;
  /**
   * Heads 2..nFuture use their own unembedding matrices rather than the trunk's (Medusa's
   * `medusa_head.{j}.1.weight`; medusa heads only). Default false.
   */
  headsOwnUnembedding: boolean;
}

/** The fields that have defaults (or are derived) and may be left out. */
export type DefaultedField =
  | "nKvHeads"
  | "headDim"
  | "ropeTheta"
  | "normEps"
  | "tieEmbeddings"
  | "nFuture"
  | "headKind"
  | "mtpLayout"
  | "mtpDepth"
  | "dtype"
  | "kvDtype"
  | "qkvBias"
  | "oBias"
  | "qkNorm"
  | "ropeScaling"
  | "headsOwnUnembedding";

/** What the user writes: a {@link ModelConfig} whose defaulted fields are optional. */
export type ModelConfigInput =
  & Omit<ModelConfig, DefaultedField>
  & Partial<Pick<ModelConfig, DefaultedField>>;

/** How one field is validated and where Hugging Face's config.json keeps it. */
interface ConfigField {
  /** Validates the field, fills its default and words its errors. */
  schema: z.ZodType;
  /** Its key in HF config.json; null for ahead's own fields (the `ahead` section, or options). */
  hf: string | null;
}

const got = (i: { input?: unknown }) => `got ${describeValue(i.input)}`;
const required = (name: string, what: string) => (i: { input?: unknown }) =>
  i.input === undefined ? `${name} is required` : `${name} must be ${what}, ${got(i)}`;

function int(name: string, min: number, max: number, multipleOf = 1) {
  const range = {
    error: (i: { input?: unknown }) => `${name} must be in [${min}, ${max}], ${got(i)}`,
  };
  const s = z.number({ error: required(name, "an integer") })
    .int({ error: (i) => `${name} must be an integer, ${got(i)}` })
    .min(min, range)
    .max(max, range);
  return multipleOf === 1 ? s : s.multipleOf(multipleOf, {
    error: (i) => `${name} must be a multiple of ${multipleOf}, ${got(i)}`,
  });
}

function flag(name: string) {
  return z.boolean({ error: required(name, "true or false") }).default(false);
}

function positive(name: string, max = Infinity) {
  const bound = max === Infinity ? "> 0" : `in (0, ${max}]`;
  return z.number({ error: required(name, "a number") })
    .positive({ error: (i) => `${name} must be ${bound}, ${got(i)}` })
    .max(max, { error: (i) => `${name} must be ${bound}, ${got(i)}` });
}

/** Each field's schema and Hugging Face key; see {@link ModelConfig} for what it means. */
const FIELDS: { readonly [K in keyof ModelConfig]: ConfigField } = {
  vocabSize: { schema: int("vocabSize", 2, 1 << 20), hf: "vocab_size" },
  dModel: { schema: int("dModel", 8, 65536, 8), hf: "hidden_size" },
  nLayers: { schema: int("nLayers", 1, 256), hf: "num_hidden_layers" },
  nHeads: { schema: int("nHeads", 1, 256), hf: "num_attention_heads" },
  nKvHeads: { schema: int("nKvHeads", 1, 256).optional(), hf: "num_key_value_heads" },
  headDim: { schema: int("headDim", 4, 256, 4).optional(), hf: "head_dim" },
  dFF: { schema: int("dFF", 8, 1 << 18, 8), hf: "intermediate_size" },
  maxSeqLen: { schema: int("maxSeqLen", 2, 1 << 20), hf: "max_position_embeddings" },
  ropeTheta: { schema: positive("ropeTheta").default(10000), hf: "rope_theta" },
  normEps: { schema: positive("normEps", 1).default(1e-5), hf: "rms_norm_eps" },
  tieEmbeddings: { schema: flag("tieEmbeddings"), hf: "tie_word_embeddings" },
  nFuture: { schema: int("nFuture", 1, MAX_FUTURE).default(4), hf: null },
  headKind: {
    schema: z.string({ error: required("headKind", "a string") }).default("transformer"),
    hf: null,
  },
  mtpLayout: {
    schema: z.enum(["mimo", "deepseek"], {
      error: (i) => `mtpLayout must be "mimo" or "deepseek", ${got(i)}`,
    }).default("mimo"),
    hf: null,
  },
  mtpDepth: { schema: int("mtpDepth", 1, MAX_FUTURE - 1).optional(), hf: null },
  dtype: {
    schema: z.enum(["f32", "f16", "q8", "q4"], {
      error: (i) => `dtype must be "f32", "f16", "q8" or "q4", ${got(i)}`,
    }).default("f32"),
    hf: null,
  },
  kvDtype: {
    schema: z.enum(["f32", "f16"], {
      error: (i) => `kvDtype must be "f32" or "f16", ${got(i)}`,
    }).optional(),
    hf: null,
  },
  qkvBias: { schema: flag("qkvBias"), hf: null },
  oBias: { schema: flag("oBias"), hf: null },
  qkNorm: { schema: flag("qkNorm"), hf: null },
  ropeScaling: {
    schema: z.discriminatedUnion("type", [
      z.strictObject({ type: z.literal("linear"), factor: positive("ropeScaling.factor") }),
      z.strictObject({
        type: z.literal("llama3"),
        factor: positive("ropeScaling.factor"),
        lowFreqFactor: positive("ropeScaling.lowFreqFactor"),
        highFreqFactor: positive("ropeScaling.highFreqFactor"),
        originalMaxPositions: int("ropeScaling.originalMaxPositions", 1, 1 << 24),
      }),
    ], {
      error: (i) =>
        `ropeScaling must be null, { type: "linear", factor } or { type: "llama3", factor, ` +
        `lowFreqFactor, highFreqFactor, originalMaxPositions }, ${got(i)}`,
    }).nullable().default(null),
    hf: "rope_scaling",
  },
  headsOwnUnembedding: { schema: flag("headsOwnUnembedding"), hf: null },
};

const ConfigSchema = z.strictObject(
  Object.fromEntries(Object.entries(FIELDS).map(([k, f]) => [k, f.schema])),
);

/**
 * Each field's key in Hugging Face's config.json (what a checkpoint loader reads); null for
 * ahead's own fields, kept in config.json's `ahead` section or given as load options.
 */
export const HF_CONFIG_KEYS: { readonly [K in keyof ModelConfig]: string | null } = Object
  .fromEntries(Object.entries(FIELDS).map(([k, f]) => [k, f.hf])) as {
    [K in keyof ModelConfig]: string | null;
  };

/**
 * Validates a configuration and fills in defaults. `headKinds` are the head kinds that exist
 * (the registry in heads/ passes them; use its `parseConfig`).
 *
 * @throws {ConfigError} naming every bad field, the allowed values and what was given.
 */
export function parseConfigFields(input: unknown, headKinds: readonly string[]): ModelConfig {
  const fail = (issues: string[]): never => {
    throw new ConfigError(`Invalid model config: ${issues.join("; ")}`);
  };
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    fail([`the config must be an object, got ${describeValue(input)}`]);
  }
  const r = ConfigSchema.safeParse(input);
  if (!r.success) {
    fail(
      r.error.issues.map((i) =>
        i.code === "unrecognized_keys" ? `unknown field(s) ${i.keys.join(", ")}` : i.message
      ),
    );
  }
  // The table's schemas give exactly the fields of ModelConfig (nKvHeads, headDim, kvDtype,
  // mtpDepth optional: their defaults depend on other fields).
  const c = r.data as
    & Omit<ModelConfig, "nKvHeads" | "headDim" | "kvDtype" | "mtpDepth">
    & Partial<ModelConfig>;
  if (!headKinds.includes(c.headKind)) {
    fail([
      `headKind must be ${
        headKinds.map((k) => `"${k}"`).join(", ").replace(/, ([^,]*)$/, " or $1")
      }, ` +
      `got ${describeValue(c.headKind)}`,
    ]);
  }
  const nKvHeads = c.nKvHeads ?? c.nHeads;
  if (c.nHeads % nKvHeads !== 0) {
    fail([`nKvHeads (${nKvHeads}) must divide nHeads (${c.nHeads})`]);
  }
  let headDim = c.headDim;
  if (headDim === undefined) {
    if (c.dModel % c.nHeads !== 0 || (c.dModel / c.nHeads) % 4 !== 0) {
      fail([`dModel (${c.dModel}) / nHeads (${c.nHeads}) must be a multiple of 4, or set headDim`]);
    }
    headDim = c.dModel / c.nHeads;
  }
  if (headDim! > 256) fail([`headDim (${headDim}) must be at most 256`]);
  if ((c.nHeads * headDim!) % 8 !== 0) {
    fail([`nHeads * headDim (${c.nHeads * headDim!}) must be a multiple of 8`]);
  }
  const rs = c.ropeScaling;
  if (rs?.type === "llama3" && !(rs.highFreqFactor > rs.lowFreqFactor)) {
    fail([
      `ropeScaling.highFreqFactor (${rs.highFreqFactor}) must be greater than lowFreqFactor ` +
      `(${rs.lowFreqFactor})`,
    ]);
  }
  if (c.headsOwnUnembedding && c.headKind !== "medusa" && c.headKind !== "sequential") {
    fail([
      `headsOwnUnembedding is supported for medusa and sequential heads only, not "${c.headKind}"`,
    ]);
  }
  if (c.headsOwnUnembedding && c.headKind === "sequential" && c.mtpLayout !== "deepseek") {
    fail([
      `headsOwnUnembedding with sequential heads needs mtpLayout "deepseek" (shared_head.head)`,
    ]);
  }
  // Other kinds draft one token per head: mtpDepth is theirs by definition (a config spread
  // from another model's may carry a stale one).
  const depth = Math.max(1, c.nFuture - 1);
  if (c.headKind === "sequential" && c.nFuture < 2) {
    fail([`sequential heads need nFuture >= 2 (one MTP module or more), got ${c.nFuture}`]);
  }
  if (c.dtype === "q8" || c.dtype === "q4") {
    const inputs = { dModel: c.dModel, dFF: c.dFF, "nHeads * headDim": c.nHeads * headDim! };
    const bad = Object.entries(inputs).filter(([, v]) => v % 32 !== 0);
    if (bad.length > 0) {
      fail([
        `dtype "${c.dtype}" quantizes rows in blocks of 32, so ${
          bad.map(([k, v]) => `${k} (${v})`).join(" and ")
        } must be a multiple of 32: use dtype "f16" for this model`,
      ]);
    }
  }
  const kvDtype = c.kvDtype ?? (c.dtype === "f32" ? "f32" : "f16");
  const mtpDepth = c.headKind === "sequential" ? c.mtpDepth ?? depth : depth;
  return { ...c, nKvHeads, headDim: headDim!, kvDtype, mtpDepth };
}
