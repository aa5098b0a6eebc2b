/**
 * What a tokenizer is to a model: text to token ids and back, and the ids that end a
 * generation. Implementations (Hugging Face tokenizer.json, bytes) live in io/tokenizer.ts.
 * @module
 */

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /**
   * Add the tokens the tokenizer's post-processor adds (a BOS token for Llama-style models).
   * Default true, as in Hugging Face. Pass false for text rendered by a chat template, which
   * already holds them.
   */
  addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Leave special tokens (BOS, EOS, chat markers) out of the text. Default false. */
  skipSpecialTokens?: boolean;
}

/** Turns text into token ids and back. */
export interface Tokenizer {
  /** Where it came from (a folder, a URL or `byteTokenizer()`); error messages name it. */
  readonly source: string;
  /** Highest token id + 1: the number of embedding rows a model needs for it. */
  readonly vocabSize: number;
  /** The beginning-of-sequence id, where the files name one. */
  readonly bosId: number | undefined;
  /** The ids that end a generation (from tokenizer_config.json and generation_config.json). */
  readonly eosIds: readonly number[];
  /** The BOS token's text, for chat templates that write it themselves. */
  readonly bosToken: string | undefined;
  /** The EOS token's text, for chat templates that write it themselves. */
  readonly eosToken: string | undefined;
  /** The model's chat template (Jinja source), if it has one. */
  readonly chatTemplate: string | undefined;
  /** Token ids of `text`. */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * The text of `ids`. Ids outside `[0, vocabSize)` throw a `TokenizerError`; ids inside the
   * range that have no token are left out, as the Python `tokenizers` package does.
   */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** The id of one token (in the vocabulary's spelling, e.g. `"▁the"`), or undefined. */
  tokenToId(token: string): number | undefined;
  /** The token string of one id, or undefined where the id has none. */
  idToToken(id: number): string | undefined;
  /** Whether `id` is a special token, the kind `skipSpecialTokens` leaves out. */
  isSpecial(id: number): boolean;
}
