/**
 * Self-distillation data for heads-only training (what Medusa does for models whose training
 * data are unknown): prompts cut from real text, each continued by the frozen trunk's own greedy
 * decoding. Heads trained on these continuations learn to guess what the trunk will say, which
 * is exactly what the verifier accepts.
 *
 * The continuation comes from the caller (`decode/` sits beside `train/`, not below it), e.g.
 *
 *     const stream = await distilledStream(corpus.train, { samples: 512, promptLen: 64,
 *       tokens: 448, seed: 1, separator: 0 },
 *       async (p) => (await complete(model, p, { maxTokens: 448, ignoreEos: true })).tokens);
 * @module
 */
import { InvalidInputError } from "../gpu/errors.ts";

/** How many continuations, of what length, from which prompts. */
export interface DistilOptions {
  /** Continuations to generate (>= 1). */
  samples: number;
  /** Tokens of real text in each prompt (>= 1). */
  promptLen: number;
  /** Tokens the trunk generates after each prompt (>= 1). */
  tokens: number;
  /** Seeds where the prompts are cut. */
  seed: number;
  /** Token written after each sample. */
  separator: number;
  /** Called after each sample with the samples done and tokens generated so far. */
  onProgress?: (done: number, generated: number) => void;
}

/** Continues a prompt: the trunk's greedy tokens after it (at most the requested number). */
export type Continuation = (prompt: number[]) => Promise<readonly number[]>;

/** Where the prompts start: `samples` seeded positions in a stream of `length` tokens. */
export function promptStarts(length: number, o: DistilOptions): number[] {
  for (const k of ["samples", "promptLen", "tokens"] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) {
      throw new InvalidInputError(`distillation: ${k} must be an integer >= 1, got ${o[k]}`);
    }
  }
  if (length < o.promptLen) {
    throw new InvalidInputError(
      `distillation: the text has ${length} tokens, fewer than one prompt of ${o.promptLen}: ` +
        `give more text or a shorter prompt`,
    );
  }
  let a = (o.seed * 0x9e3779b1 + 0x632be5ab) >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: o.samples }, () => Math.floor(next() * (length - o.promptLen + 1)));
}

/**
 * The distilled stream: for each seeded prompt, its real tokens, then the continuation, then the
 * separator. Train heads-only on it in place of the real text.
 */
export async function distilledStream(
  source: Uint32Array,
  o: DistilOptions,
  continuation: Continuation,
): Promise<Uint32Array> {
  const starts = promptStarts(source.length, o);
  const parts: Uint32Array[] = [];
  let n = 0, generated = 0;
  for (const [i, s] of starts.entries()) {
    const prompt = Array.from(source.subarray(s, s + o.promptLen));
    const more = await continuation(prompt);
    const part = new Uint32Array(prompt.length + more.length + 1);
    part.set(prompt);
    part.set(more, prompt.length);
    part[part.length - 1] = o.separator;
    parts.push(part);
    n += part.length;
    generated += more.length;
    o.onProgress?.(i + 1, generated);
  }
  const out = new Uint32Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
