/**
 * The decode state: a small u32 buffer through which the decode loop lives on the GPU. The
 * layout below is the one definition; {@link STATE_WGSL} is generated from it for the kernels
 * that read the state, so the TypeScript and WGSL sides cannot disagree.
 * @module
 */

/** Most output heads a model may have, and most rows a verify block holds. */
export const MAX_FUTURE = 8;
/** Most stop token ids a generation can have. */
export const MAX_STOP_IDS = 64;
/** An empty draft slot: never matches a token, embeds as zeros. */
export const NO_TOKEN = 0xffffffff;

/** Word offsets of the state's fields, and its size in words. */
export interface StateLayout {
  /** 1 once a stop condition hit: every later launch exits at once. Word 0 (a `done` flag). */
  DONE: number;
  /** Tokens in the sequence: prompt + generated. */
  LEN: number;
  /** Tokens emitted after the prompt. */
  GENERATED: number;
  /** Decode steps (forward passes after the prompt) that ran. */
  STEPS: number;
  /** Block row whose hidden state the draft heads read. */
  HEAD_ROW: number;
  /** Stop when LEN reaches this (prompt + maxTokens, <= maxSeqLen). */
  LIMIT: number;
  /** Number of stop token ids at STOP. */
  NSTOP: number;
  /** [MAX_FUTURE] per draft slot: drafts accepted. */
  ACCEPTED: number;
  /** [MAX_FUTURE] per draft slot: drafts proposed. */
  PROPOSED: number;
  /** [MAX_STOP_IDS] stop token ids. */
  STOP: number;
  /** Size of the state in u32 words. */
  WORDS: number;
}

/** Fields in order with their sizes in words; DONE is word 0 so the state doubles as a `done` flag. */
const LAYOUT: { readonly [K in Exclude<keyof StateLayout, "WORDS">]: readonly [number, string] } = {
  DONE: [1, "1 once a stop condition hit: every later launch exits at once"],
  LEN: [1, "tokens in the sequence: prompt + generated"],
  GENERATED: [1, "tokens emitted after the prompt"],
  STEPS: [1, "decode steps (forward passes after the prompt) that ran"],
  HEAD_ROW: [1, "block row whose hidden state the draft heads read"],
  LIMIT: [1, "stop when LEN reaches this (prompt + maxTokens, <= maxSeqLen)"],
  NSTOP: [1, "number of stop token ids at STOP"],
  ACCEPTED: [MAX_FUTURE, "per draft slot: drafts accepted"],
  PROPOSED: [MAX_FUTURE, "per draft slot: drafts proposed"],
  STOP: [MAX_STOP_IDS, "stop token ids"],
};

function offsets(): StateLayout {
  const out: Record<string, number> = {};
  let at = 0;
  for (const [name, [words]] of Object.entries(LAYOUT)) {
    out[name] = at;
    at += words;
  }
  return { ...out, WORDS: at } as unknown as StateLayout;
}

/** Word offsets of the state's fields; `S.WORDS` is its size in u32 words. */
export const S: Readonly<StateLayout> = offsets();

/** WGSL constants `S_<FIELD>` (word offsets), `NO_TOKEN` and `MAX_FUTURE`, for kernels that read the state. */
export const STATE_WGSL: string = [
  "// Generated from kernels/state.ts: word offsets of the decode state buffer.",
  ...Object.entries(LAYOUT).map(([name, [words, doc]]) =>
    `const S_${name}: u32 = ${S[name as keyof StateLayout]}u;  // ${
      words > 1 ? `[${words}] ` : ""
    }${doc}`
  ),
  `const NO_TOKEN: u32 = ${NO_TOKEN}u;  // an empty draft slot`,
  `const MAX_FUTURE: u32 = ${MAX_FUTURE}u;`,
  "",
].join("\n");
