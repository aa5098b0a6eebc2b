/**
 * The model configuration: a zod schema with camelCase fields, and its validation.
 * @module
 */
import { z } from "zod";
import { ConfigError } from "../gpu/errors.ts";

/**
 * Largest number of output heads (nFuture) a model may have.
 *
 * @example
 * ```ts
 * import { MAX_FUTURE } from "@ahead/mtp";
 * console.log(MAX_FUTURE); // 16
 * ```
 */
export const MAX_FUTURE = 16;

const int = (name: string, min: number, max: number): z.ZodNumber =>
  z.number({ invalid_type_error: `${name} must be a number` }).int(`${name} must be an integer`)
    .min(min, `${name} must be in [${min}, ${max}]`).max(
      max,
      `${name} must be in [${min}, ${max}]`,
    );

/**
 * What the user writes: every field of {@link ModelConfig}, the ones with defaults optional.
 *
 * - `nKvHeads` defaults to `nHeads` and must divide it (grouped-query attention).
 * - `headDim` defaults to `dModel / nHeads`; a multiple of 4 (vector loads), at most 256.
 * - `nFuture` is the number of output heads: head 1 predicts t+1, heads 2..nFuture t+2..t+nFuture.
 * - `dtype` is the storage type of the weight matrices; activations are always f32.
 *
 * @example
 * ```ts
 * import type { ModelConfigInput } from "@ahead/mtp";
 * const llama1b: ModelConfigInput = {
 *   vocabSize: 32000, dModel: 2048, nLayers: 16, nHeads: 32, nKvHeads: 8, dFF: 8192,
 *   maxSeqLen: 2048, nFuture: 4, dtype: "f16",
 * };
 * ```
 */
export interface ModelConfigInput {
  /** Number of token ids, in [2, 2^20]. */
  vocabSize: number;
  /** Width of the residual stream, a multiple of 8. */
  dModel: number;
  /** Number of trunk layers, in [1, 256]. */
  nLayers: number;
  /** Number of query heads. */
  nHeads: number;
  /** Number of key/value heads (default nHeads); must divide nHeads. */
  nKvHeads?: number;
  /** Width of one attention head (default dModel / nHeads), a multiple of 4, at most 256. */
  headDim?: number;
  /** Hidden width of the feed-forward block, a multiple of 8. */
  dFF: number;
  /** Longest sequence, prompt included. */
  maxSeqLen: number;
  /** RoPE base (default 10000). */
  ropeTheta?: number;
  /** RMSNorm epsilon (default 1e-5). */
  normEps?: number;
  /** Number of output heads, head 1 included (default 4, at most 16). */
  nFuture?: number;
  /** Kind of heads 2..nFuture (default "transformer"). */
  headKind?: "transformer" | "medusa";
  /** Unembedding shares the embedding matrix (default false). */
  tieEmbeddings?: boolean;
  /** Storage type of weight matrices (default "f32"). */
  dtype?: "f32" | "f16";
}

/** The schema's output: the config before derived defaults (nKvHeads, headDim) are filled. */
export type ParsedConfigFields = Omit<ModelConfig, "nKvHeads" | "headDim"> & {
  nKvHeads?: number;
  headDim?: number;
};

/**
 * The zod schema of a model configuration; {@link parseConfig} adds the cross-field checks and
 * is the public entry point.
 */
export const ModelConfigSchema: z.ZodType<ParsedConfigFields, z.ZodTypeDef, ModelConfigInput> = z
  .object({
    vocabSize: int("vocabSize", 2, 1 << 20),
    dModel: int("dModel", 8, 65536).refine((v) => v % 8 === 0, "dModel must be a multiple of 8"),
    nLayers: int("nLayers", 1, 256),
    nHeads: int("nHeads", 1, 256),
    nKvHeads: int("nKvHeads", 1, 256).optional(),
    headDim: int("headDim", 4, 256).refine((v) => v % 4 === 0, "headDim must be a multiple of 4")
      .optional(),
    dFF: int("dFF", 8, 1 << 18).refine((v) => v % 8 === 0, "dFF must be a multiple of 8"),
    maxSeqLen: int("maxSeqLen", 2, 1 << 20),
    ropeTheta: z.number().positive("ropeTheta must be > 0").default(10000),
    normEps: z.number().positive("normEps must be > 0").max(1, "normEps must be in (0, 1]").default(
      1e-5,
    ),
    nFuture: int("nFuture", 1, MAX_FUTURE).default(4),
    headKind: z.enum(["transformer", "medusa"], {
      errorMap: () => ({ message: 'headKind must be "transformer" or "medusa"' }),
    }).default("transformer"),
    tieEmbeddings: z.boolean().default(false),
    dtype: z.enum(["f32", "f16"], {
      errorMap: () => ({ message: 'dtype must be "f32" or "f16"' }),
    }).default("f32"),
  }).strict();

/**
 * A validated configuration with every default filled in.
 *
 * @example
 * ```ts
 * import { parseConfig } from "@ahead/mtp";
 * const config = parseConfig({ vocabSize: 256, dModel: 64, nLayers: 2, nHeads: 4, dFF: 128, maxSeqLen: 128 });
 * console.log(config.headDim, config.nKvHeads, config.nFuture); // 16 4 4
 * ```
 */
export interface ModelConfig {
  /** Number of token ids. */
  vocabSize: number;
  /** Width of the residual stream (multiple of 8). */
  dModel: number;
  /** Number of trunk transformer layers. */
  nLayers: number;
  /** Number of query heads. */
  nHeads: number;
  /** Number of key/value heads; divides `nHeads`. */
  nKvHeads: number;
  /** Width of one attention head (a multiple of 4, at most 256). */
  headDim: number;
  /** Hidden width of the SwiGLU feed-forward block (multiple of 8). */
  dFF: number;
  /** Longest sequence (prompt + generated tokens) the KV cache holds. */
  maxSeqLen: number;
  /** RoPE base frequency (Llama: 10000; Llama 3: 500000). */
  ropeTheta: number;
  /** RMSNorm epsilon. */
  normEps: number;
  /** Number of output heads, the ordinary next-token head included. */
  nFuture: number;
  /** Kind of heads 2..nFuture. */
  headKind: "transformer" | "medusa";
  /** Whether the unembedding reuses the token embedding matrix. */
  tieEmbeddings: boolean;
  /** Storage type of weight matrices. */
  dtype: "f32" | "f16";
}

/**
 * Validates a configuration and fills in defaults.
 *
 * @throws {ConfigError} naming the field and the allowed range.
 * @example
 * ```ts
 * import { parseConfig } from "@ahead/mtp";
 * const c = parseConfig({ vocabSize: 32000, dModel: 2048, nLayers: 16, nHeads: 32, nKvHeads: 8, dFF: 8192, maxSeqLen: 2048, dtype: "f16" });
 * console.log(c.headDim); // 64
 * ```
 */
export function parseConfig(input: unknown): ModelConfig {
  const r = ModelConfigSchema.safeParse(input);
  if (!r.success) {
    const issues = r.error.issues.map((i) => {
      const field = i.path.join(".") || "config";
      if (i.code === "invalid_type" && i.received === "undefined") {
        return `${field} is required`;
      }
      if (i.code === "unrecognized_keys") return `unknown field(s) ${i.keys.join(", ")}`;
      return `${field}: ${i.message}`;
    });
    throw new ConfigError(`Invalid model config: ${issues.join("; ")}`);
  }
  const c = r.data;
  const nKvHeads = c.nKvHeads ?? c.nHeads;
  if (c.nHeads % nKvHeads !== 0) {
    throw new ConfigError(
      `Invalid model config: nKvHeads (${nKvHeads}) must divide nHeads (${c.nHeads})`,
    );
  }
  let headDim = c.headDim;
  if (headDim === undefined) {
    if (c.dModel % c.nHeads !== 0 || (c.dModel / c.nHeads) % 4 !== 0) {
      throw new ConfigError(
        `Invalid model config: dModel (${c.dModel}) / nHeads (${c.nHeads}) must be a multiple ` +
          `of 4, or set headDim`,
      );
    }
    headDim = c.dModel / c.nHeads;
  }
  if (headDim > 256) {
    throw new ConfigError(`Invalid model config: headDim (${headDim}) must be at most 256`);
  }
  if ((c.nHeads * headDim) % 8 !== 0) {
    throw new ConfigError(
      `Invalid model config: nHeads * headDim (${c.nHeads * headDim}) must be a multiple of 8`,
    );
  }
  return { ...c, nKvHeads, headDim };
}

/**
 * Number of parameters of a model with this configuration, heads included.
 *
 * @example
 * ```ts
 * import { countParameters, parseConfig } from "@ahead/mtp";
 * const c = parseConfig({ vocabSize: 256, dModel: 64, nLayers: 2, nHeads: 4, dFF: 128, maxSeqLen: 64, nFuture: 1 });
 * console.log(countParameters(c));
 * ```
 */
export function countParameters(c: ModelConfig): number {
  const attn = c.dModel * (c.nHeads + 2 * c.nKvHeads) * c.headDim +
    c.nHeads * c.headDim * c.dModel;
  const layer = attn + 3 * c.dModel * c.dFF + 2 * c.dModel;
  const head = c.headKind === "transformer" ? layer : c.dModel * c.dModel + c.dModel;
  return c.vocabSize * c.dModel * (c.tieEmbeddings ? 1 : 2) + c.nLayers * layer + c.dModel +
    (c.nFuture - 1) * head;
}
