/**
 * Text in and text out: Hugging Face `tokenizer.json` folders (through `@huggingface/tokenizers`),
 * a built-in byte tokenizer for byte-level models, and incremental decoding of a stream of token
 * ids into text that never splits a character.
 * @module
 */
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { describeValue, TokenizerError } from "../gpu/errors.ts";
import type { DecodeOptions, EncodeOptions, Tokenizer } from "../model/tokenizer.ts";

export type { DecodeOptions, EncodeOptions, Tokenizer };

/** What tokenizer_config.json (and a chat_template.jinja beside it) say about a tokenizer. */
export interface TokenizerConfig {
  /** The tokenizer_config.json path or URL, named even where the file is absent. */
  readonly source: string;
  /** `bos_token`, as text. */
  readonly bosToken: string | undefined;
  /** `eos_token`, as text. */
  readonly eosToken: string | undefined;
  /** The default chat template: chat_template.jinja, else `chat_template` (its "default" entry). */
  readonly chatTemplate: string | undefined;
  /** Every named template where `chat_template` is a list of `{ name, template }`. */
  readonly chatTemplates: Readonly<Record<string, string>>;
  /** `additional_special_tokens`, as text. */
  readonly additionalSpecialTokens: readonly string[];
}

/** Options of {@link loadTokenizer}. */
export interface LoadTokenizerOptions {
  /** Aborts the downloads of an `https:` folder. */
  signal?: AbortSignal;
}

/** Options of {@link byteTokenizer}. */
export interface ByteTokenizerOptions {
  /** Id of a BOS token (>= 256), added in front by `encode` unless `addSpecialTokens` is false. */
  bos?: number;
  /** Id of an EOS token (>= 256). */
  eos?: number;
}

/** Options of {@link createTextStream}. */
export interface TextStreamOptions {
  /** Leave special tokens out of the text. Default false. */
  skipSpecialTokens?: boolean;
}

/** Incremental decoder: ids in, text that is safe to show out. */
export interface TextStream {
  /** Adds ids; returns the text they complete (possibly ""). */
  push(ids: readonly number[]): string;
  /** Returns what is still held back (an incomplete character at the end). */
  flush(): string;
}

/**
 * Throws a {@link TokenizerError} unless every id is an integer in `[0, vocabSize)`. `where`
 * starts the message (a file, or the call that got the ids).
 */
export function checkIds(ids: ArrayLike<number>, vocabSize: number, where: string): void {
  if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) {
    throw new TokenizerError(
      `${where}: token ids must be an array of integers, got ${describeValue(ids)}`,
    );
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new TokenizerError(
        `${where}: token id ${describeValue(id)} (at index ${i}) is outside the vocabulary of ` +
          `${vocabSize} ids (valid ids are 0..${vocabSize - 1}); the ids do not come from this ` +
          `tokenizer's model, or the model's vocabulary is larger than its tokenizer's`,
      );
    }
  }
}

/**
 * Loads the tokenizer of a Hugging Face model folder: `tokenizer.json` (required),
 * `tokenizer_config.json`, `chat_template.jinja` and `generation_config.json` (each optional).
 * `dir` is a path, or a `file:` or `https:` URL of the folder (or of its tokenizer.json).
 *
 * @example
 * ```ts
 * import { loadTokenizer } from "@ahead/mtp";
 * const tok = await loadTokenizer("tests/fixtures/tokenizers/tiny");
 * const ids = tok.encode("hello world"); // [1, 272, 277]: BOS, "▁hello", "▁world"
 * console.log(tok.decode(ids, { skipSpecialTokens: true })); // "hello world"
 * ```
 */
export async function loadTokenizer(
  dir: string | URL,
  options: LoadTokenizerOptions = {},
): Promise<Tokenizer> {
  const folder = folderOf(dir);
  const file = fileIn(folder, "tokenizer.json");
  const text = await readText(file, options.signal);
  if (text === undefined) {
    throw new TokenizerError(
      `no tokenizer.json at ${label(file)}: point loadTokenizer at a Hugging Face model folder ` +
        `that has one (older models that ship only tokenizer.model or vocab.txt must be ` +
        `converted with transformers first), or use byteTokenizer() for a byte-level model`,
    );
  }
  const json = parseJsonObject(text, file);
  const config = await readTokenizerConfigAt(folder, options.signal);
  const generation = await readJsonIfPresent(
    fileIn(folder, "generation_config.json"),
    options.signal,
  );
  const model = json.model as Record<string, unknown> | undefined;
  let hf: HfTokenizer;
  try {
    // tokenizer.json files written by hand or by old versions omit the components they lack;
    // the library wants every key present.
    hf = new HfTokenizer({
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      added_tokens: [],
      ...json,
    }, config.raw);
  } catch (e) {
    throw new TokenizerError(
      `${label(file)} could not be built into a tokenizer (model type ` +
        `${describeValue(model?.type)}): ${messageOf(e)}. The file may be damaged, or use a ` +
        `component @huggingface/tokenizers 0.2 does not support`,
    );
  }
  return new HfBackedTokenizer(hf, label(folder), config.values, generation, label(file));
}

/**
 * Reads tokenizer_config.json and chat_template.jinja from a model folder without loading the
 * vocabulary. Both files are optional: a folder with neither gives empty values.
 */
export async function readTokenizerConfig(
  dir: string | URL,
  options: LoadTokenizerOptions = {},
): Promise<TokenizerConfig> {
  return (await readTokenizerConfigAt(folderOf(dir), options.signal)).values;
}

/**
 * A tokenizer for byte-level models: ids 0..255 are the bytes of the text's UTF-8. Special
 * tokens exist only where given; they extend the vocabulary to the highest of them + 1, and
 * decode as `<bos>` / `<eos>` unless skipped.
 *
 * @example
 * ```ts
 * import { byteTokenizer } from "@ahead/mtp";
 * const tok = byteTokenizer({ eos: 256 });
 * console.log(tok.encode("hé")); // [104, 195, 169]
 * console.log(tok.vocabSize, tok.eosIds); // 257 [256]
 * console.log(tok.decode([104, 195, 169, 256], { skipSpecialTokens: true })); // "hé"
 * ```
 */
export function byteTokenizer(options: ByteTokenizerOptions = {}): Tokenizer {
  const specials = new Map<number, string>();
  for (const [key, name] of [["bos", "<bos>"], ["eos", "<eos>"]] as const) {
    const id = options[key];
    if (id === undefined) continue;
    if (!Number.isInteger(id) || id < 256 || id >= 1 << 24) {
      throw new TokenizerError(
        `byteTokenizer(): ${key} must be an integer id >= 256 (0..255 are the bytes), got ` +
          describeValue(id),
      );
    }
    if (specials.has(id)) {
      throw new TokenizerError(`byteTokenizer(): bos and eos must differ, both are ${id}`);
    }
    specials.set(id, name);
  }
  const vocabSize = Math.max(256, ...[...specials.keys()].map((id) => id + 1));
  const byName = new Map([...specials].map(([id, name]) => [name, id]));
  const utf8 = new TextEncoder();
  const where = "byteTokenizer()";
  return {
    source: where,
    vocabSize,
    bosId: options.bos,
    eosIds: options.eos === undefined ? [] : [options.eos],
    bosToken: options.bos === undefined ? undefined : "<bos>",
    eosToken: options.eos === undefined ? undefined : "<eos>",
    chatTemplate: undefined,
    encode(text, { addSpecialTokens = true } = {}) {
      checkText(text, where);
      const ids = Array.from(utf8.encode(text));
      if (addSpecialTokens && options.bos !== undefined) ids.unshift(options.bos);
      return ids;
    },
    decode(ids, { skipSpecialTokens = false } = {}) {
      checkIds(ids, vocabSize, `${where}.decode()`);
      // Each run of bytes is decoded on its own so that a special token between two halves of
      // a character cannot join them, as in Hugging Face's byte-level decoder.
      const text: string[] = [];
      let run: number[] = [];
      for (const id of ids) {
        if (id < 256) {
          run.push(id);
          continue;
        }
        const name = specials.get(id);
        if (name === undefined || skipSpecialTokens) continue;
        text.push(utf8Lossy(run), name);
        run = [];
      }
      text.push(utf8Lossy(run));
      return text.join("");
    },
    tokenToId(token) {
      const byte = /^<0x([0-9A-F]{2})>$/.exec(token);
      return byte ? parseInt(byte[1], 16) : byName.get(token);
    },
    idToToken(id) {
      if (Number.isInteger(id) && id >= 0 && id < 256) {
        return `<0x${id.toString(16).toUpperCase().padStart(2, "0")}>`;
      }
      return specials.get(id);
    },
    isSpecial: (id) => specials.has(id),
  };
}

// Past this many ids without a clean end of text the stream stops waiting for a character to
// complete. Valid text never gets there (a character's bytes span at most 4 ids, and the window is
// cut at the last complete character after each push); a model emitting invalid bytes could, and
// the window must stay small for push() to stay O(window).
const MAX_PENDING_IDS = 64;
// An incomplete UTF-8 character is at most 3 bytes, so at most the last 3 ids hold it.
const MAX_INCOMPLETE_IDS = 3;

/**
 * Decodes a stream of token ids chunk by chunk. Each `push` returns the new text that is safe to
 * show: it never ends inside a multi-byte character (an incomplete one is held back rather than
 * shown as U+FFFD), and everything pushed, joined and followed by `flush()`, equals
 * `tokenizer.decode(allIds)`. It decodes a short window of earlier ids with the new ones and
 * returns the difference, so tokenizers that drop the leading space of the first token
 * (SentencePiece, Metaspace) still get their spaces right, at a cost that does not grow with
 * the length of the output.
 *
 * @example
 * ```ts
 * import { byteTokenizer, createTextStream } from "@ahead/mtp";
 * const stream = createTextStream(byteTokenizer());
 * console.log(JSON.stringify(stream.push([0x68, 0xc3]))); // "h": the é is not complete yet
 * console.log(JSON.stringify(stream.push([0xa9, 0x21]))); // "é!"
 * console.log(JSON.stringify(stream.flush())); // ""
 * ```
 */
export function createTextStream(
  tokenizer: Tokenizer,
  options: TextStreamOptions = {},
): TextStream {
  const skipSpecialTokens = options.skipSpecialTokens ?? false;
  const decode = (ids: readonly number[]) => tokenizer.decode(ids, { skipSpecialTokens });
  const incomplete = (text: string) => text.endsWith("\uFFFD");
  // window holds the ids from the start of the previous chunk of text on; window[0, read) is
  // that chunk, whose text (prefix) is already shown; shown counts the characters after it
  // returned while the last character was still incomplete.
  let window: number[] = [];
  let read = 0;
  let prefix = "";
  let shown = 0;

  // Makes window[read, end) the new prefix chunk.
  const advance = (end: number) => {
    window = window.slice(read);
    read = end - read;
    prefix = decode(window.slice(0, read));
    shown = 0;
  };

  // before: the window's length before this push.
  const step = (final: boolean, before: number): string => {
    let text = decode(window);
    if (final || !incomplete(text)) {
      const out = text.slice(prefix.length + shown);
      advance(window.length);
      return out;
    }
    let out = "";
    // Cut at the last complete character among the new ids (ids before them were tried when
    // they came), so the window does not grow while chunks keep ending mid-character.
    const lowest = Math.max(before, read + 1, window.length - MAX_INCOMPLETE_IDS);
    for (let end = window.length - 1; end >= lowest; end--) {
      const head = decode(window.slice(0, end));
      if (incomplete(head)) continue;
      out = head.slice(prefix.length + shown);
      advance(end);
      text = decode(window);
      break;
    }
    if (window.length - read > MAX_PENDING_IDS) {
      out += text.slice(prefix.length + shown);
      advance(window.length);
      return out;
    }
    // Only the last U+FFFD can still change: the decoder's errors before it are final.
    const tail = text.slice(prefix.length + shown, text.length - 1);
    shown += tail.length;
    return out + tail;
  };

  return {
    push(ids) {
      checkIds(ids, tokenizer.vocabSize, `${tokenizer.source}: createTextStream().push()`);
      const before = window.length;
      for (const id of ids) {
        // Ids that decode to nothing are kept out of the window so that its first id always
        // has text: tokenizers that treat the first token specially then see the same first
        // token in the window's prefix as in the whole output.
        if (skipSpecialTokens && tokenizer.isSpecial(id)) continue;
        if (tokenizer.idToToken(id) === undefined) continue;
        window.push(id);
      }
      return window.length > before ? step(false, before) : "";
    },
    flush() {
      return window.length > read ? step(true, window.length) : "";
    },
  };
}

class HfBackedTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosIds: readonly number[];
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly chatTemplate: string | undefined;
  readonly #hf: HfTokenizer;
  readonly #vocab: readonly (string | undefined)[];
  readonly #special: ReadonlySet<number>;

  constructor(
    hf: HfTokenizer,
    readonly source: string,
    config: TokenizerConfig,
    generation: Record<string, unknown> | undefined,
    file: string,
  ) {
    this.#hf = hf;
    // The library puts the added tokens into the model's vocabulary array, so its length is the
    // highest id + 1.
    this.#vocab = hf.model?.vocab ?? [];
    this.vocabSize = this.#vocab.length;
    const special = new Set<number>();
    for (const [id, token] of hf.get_added_tokens_decoder()) if (token.special) special.add(id);
    for (const token of config.additionalSpecialTokens) {
      const id = hf.token_to_id(token);
      if (id !== undefined) special.add(id);
    }
    this.#special = special;
    this.bosToken = config.bosToken;
    this.eosToken = config.eosToken;
    this.chatTemplate = config.chatTemplate;
    const idOf = (token: string | undefined, key: string) => {
      if (token === undefined) return undefined;
      const id = hf.token_to_id(token);
      if (id === undefined) {
        throw new TokenizerError(
          `${config.source} names ${key} ${JSON.stringify(token)}, which ${file} does not ` +
            `have: the two files belong to different tokenizers; take both from the same model`,
        );
      }
      return id;
    };
    const generationIds = (key: string): number[] => {
      const v = generation?.[key];
      const ids = (Array.isArray(v) ? v : [v]).filter((id): id is number =>
        Number.isInteger(id) && id >= 0 && id < this.vocabSize
      );
      return ids;
    };
    this.bosId = idOf(config.bosToken, "bos_token") ?? generationIds("bos_token_id")[0];
    const eos = idOf(config.eosToken, "eos_token");
    this.eosIds = [
      ...new Set([...(eos === undefined ? [] : [eos]), ...generationIds("eos_token_id")]),
    ];
  }

  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    checkText(text, this.source);
    // Without an unknown token the library yields undefined for a piece the vocabulary lacks;
    // the Python package leaves such pieces out.
    return this.#hf.encode(text, { add_special_tokens: addSpecialTokens }).ids.filter((id) =>
      id !== undefined
    );
  }

  decode(ids: readonly number[], { skipSpecialTokens = false }: DecodeOptions = {}): string {
    checkIds(ids, this.vocabSize, `${this.source}: decode()`);
    const kept = ids.filter((id) => this.#vocab[id] !== undefined);
    if (kept.length === 0) return "";
    // clean_up_tokenization_spaces is a transformers feature the Python tokenizers package does
    // not have; it also rewrites text across token boundaries, which streaming cannot follow.
    return this.#hf.decode(kept, {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) ? this.#vocab[id] : undefined;
  }

  isSpecial(id: number): boolean {
    return this.#special.has(id);
  }
}

const textDecoder = new TextDecoder("utf-8", { ignoreBOM: true });
function utf8Lossy(bytes: number[]): string {
  return bytes.length === 0 ? "" : textDecoder.decode(Uint8Array.from(bytes));
}

function checkText(text: unknown, where: string): void {
  if (typeof text !== "string") {
    throw new TokenizerError(`${where}: encode() takes a string, got ${describeValue(text)}`);
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// A folder is a path string or a URL; files in it are addressed the same way.
type Place = string | URL;

function isUrlString(s: string): boolean {
  // Two letters at least, so that a Windows drive ("C:\models") stays a path.
  return /^[a-z][a-z0-9+.-]+:/i.test(s);
}

function folderOf(dir: string | URL): Place {
  if (typeof dir !== "string" && !(dir instanceof URL)) {
    throw new TokenizerError(
      `a tokenizer folder must be a path or a URL, got ${describeValue(dir)}`,
    );
  }
  if (dir instanceof URL || isUrlString(dir)) {
    const url = new URL(String(dir));
    url.pathname = url.pathname.replace(/\/tokenizer\.json$/, "/");
    if (!url.pathname.endsWith("/")) url.pathname += "/";
    return url;
  }
  const path = dir.replace(/[\\/]tokenizer\.json$/, "").replace(/[\\/]+$/, "");
  return path === "" ? "." : path;
}

function fileIn(folder: Place, name: string): Place {
  return folder instanceof URL ? new URL(name, folder) : `${folder}/${name}`;
}

function label(place: Place): string {
  return place instanceof URL ? place.href : place;
}

/** The file's text, or undefined where it does not exist. */
async function readText(file: Place, signal?: AbortSignal): Promise<string | undefined> {
  try {
    if (typeof file === "string" || file.protocol === "file:") {
      return await Deno.readTextFile(file, { signal });
    }
    const res = await fetch(file, { signal });
    if (res.ok) return await res.text();
    await res.body?.cancel();
    if (res.status === 404) return undefined;
    throw new TokenizerError(
      `${label(file)}: HTTP ${res.status} ${res.statusText}; check the URL and that the model ` +
        `is public (private models need a download with credentials first)`,
    );
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    if (e instanceof TokenizerError || (e instanceof DOMException && e.name === "AbortError")) {
      throw e;
    }
    throw new TokenizerError(`could not read ${label(file)}: ${messageOf(e)}`);
  }
}

function parseJsonObject(text: string, file: Place): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(
      `${label(file)} is not valid JSON (${messageOf(e)}): the file is damaged or was cut off; ` +
        `download it again`,
    );
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TokenizerError(
      `${label(file)} must hold a JSON object, got ${describeValue(value)}: the file is not a ` +
        `tokenizer file; download it again`,
    );
  }
  return value as Record<string, unknown>;
}

async function readJsonIfPresent(
  file: Place,
  signal?: AbortSignal,
): Promise<Record<string, unknown> | undefined> {
  const text = await readText(file, signal);
  return text === undefined ? undefined : parseJsonObject(text, file);
}

async function readTokenizerConfigAt(
  folder: Place,
  signal?: AbortSignal,
): Promise<{ values: TokenizerConfig; raw: Record<string, unknown> }> {
  const file = fileIn(folder, "tokenizer_config.json");
  const raw = await readJsonIfPresent(file, signal) ?? {};
  const where = label(file);
  // Transformers writes the template to its own file since 4.43 and prefers that file.
  const jinja = await readText(fileIn(folder, "chat_template.jinja"), signal);
  const templates = namedTemplates(raw.chat_template, where);
  const tokenText = (key: string): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === "string") return v;
    if (typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
      return (v as { content: string }).content;
    }
    throw new TokenizerError(
      `${where}: ${key} must be a string or an object with a string "content", got ` +
        describeValue(v),
    );
  };
  const extra = raw.additional_special_tokens;
  const additionalSpecialTokens = Array.isArray(extra)
    ? extra.map((t) => typeof t === "string" ? t : (t as { content?: unknown })?.content)
      .filter((t): t is string => typeof t === "string")
    : [];
  return {
    raw,
    values: {
      source: where,
      bosToken: tokenText("bos_token"),
      eosToken: tokenText("eos_token"),
      chatTemplate: jinja ?? templates.default,
      chatTemplates: templates.all,
      additionalSpecialTokens,
    },
  };
}

function namedTemplates(
  value: unknown,
  where: string,
): { default: string | undefined; all: Record<string, string> } {
  if (value === undefined || value === null) return { default: undefined, all: {} };
  if (typeof value === "string") return { default: value, all: { default: value } };
  const all: Record<string, string> = {};
  const valid = Array.isArray(value) && value.every((t) => {
    const ok = t !== null && typeof t === "object" && typeof t.name === "string" &&
      typeof t.template === "string";
    if (ok) all[t.name] = t.template;
    return ok;
  });
  if (!valid) {
    throw new TokenizerError(
      `${where}: chat_template must be a string or a list of { name, template } objects, got ` +
        `${describeValue(value)}; fix or remove it`,
    );
  }
  return { default: all.default, all };
}
