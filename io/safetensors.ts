/**
 * Safetensors checkpoints (the Hugging Face format: an 8-byte little-endian header length, a JSON
 * header, then the raw little-endian tensor bytes), read from disk or over HTTP range requests one
 * tensor at a time, and written atomically.
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { CheckpointError, describeValue } from "../gpu/errors.ts";

// A Map, not an object literal, so that header strings such as "constructor" or "__proto__" are
// never mistaken for dtypes through the prototype chain.
const DTYPE_SIZES: ReadonlyMap<string, number> = new Map([
  ["F64", 8],
  ["F32", 4],
  ["F16", 2],
  ["BF16", 2],
  ["F8_E4M3", 1],
  ["F8_E5M2", 1],
  ["I64", 8],
  ["I32", 4],
  ["I16", 2],
  ["I8", 1],
  ["U64", 8],
  ["U32", 4],
  ["U16", 2],
  ["U8", 1],
  ["BOOL", 1],
]);

/**
 * A safetensors element type. `U16`/`U32`/`U64` are part of the format and are read like the
 * others; `F8_E4M3`/`F8_E5M2` are known (a file holding them opens) but cannot be converted for
 * weights.
 */
export type Dtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "F8_E4M3"
  | "F8_E5M2"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** The element types {@link writeSafetensors} writes: those of the engine's weights and state. */
export type WritableDtype = "F32" | "F16" | "BF16" | "I32" | "U8" | "I8";

/** Where one tensor lives: its header entry, with the offset made absolute. */
export interface TensorInfo {
  /** The tensor's name in the header (HF naming, e.g. `model.layers.0.mlp.up_proj.weight`). */
  readonly name: string;
  /** Element type. */
  readonly dtype: Dtype;
  /** Dimensions, outermost first; `[]` is a scalar. */
  readonly shape: readonly number[];
  /** Offset of the first byte from the start of the file (not of the data section). */
  readonly byteOffset: number;
  /** Number of bytes: the product of `shape` times {@link dtypeSize}. */
  readonly byteLength: number;
  /** The path or URL of the file that holds the tensor. */
  readonly file: string;
}

/** An open safetensors file or checkpoint: the header is parsed, tensor data is read on demand. */
export interface TensorSource {
  /** The file's path or URL; for a checkpoint, the folder's. */
  readonly path: string;
  /** The header's `__metadata__` (for a checkpoint, the first file's); `{}` when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Every tensor by name, in file order so that reading them in turn walks the file forward. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /**
   * The bytes of one tensor, exactly `byteLength` of them, in a fresh buffer. Only that tensor is
   * read, so peak host memory stays near the largest tensor. Rejects with a CheckpointError for an
   * unknown name, a closed source, or a file that got shorter since it was opened.
   */
  read(name: string): Promise<Uint8Array>;
  /** Releases the file handles; later reads reject. Calling it twice is harmless. */
  close(): void;
}

/** A model folder opened by {@link openCheckpoint}: one or more safetensors files seen as one. */
export interface Checkpoint extends TensorSource {
  /** The safetensors files behind {@link TensorSource.tensors}, in the order they were listed. */
  readonly files: readonly string[];
  /** The `metadata` object of `model.safetensors.index.json` (e.g. `total_size`), if any. */
  readonly indexMetadata: Readonly<Record<string, unknown>> | undefined;
}

/** Options of {@link openSafetensors} and {@link openCheckpoint}. */
export interface OpenOptions {
  /** Aborts the opening and every later `read`; they reject with the signal's reason. */
  signal?: AbortSignal;
}

/** One tensor given to {@link writeSafetensors}. */
export interface TensorToWrite {
  /** Name in the header; unique, not `__metadata__`. */
  readonly name: string;
  /** Element type; must agree with `data`'s array type unless `data` is raw bytes. */
  readonly dtype: WritableDtype;
  /** Dimensions, outermost first; `[]` is a scalar. */
  readonly shape: readonly number[];
  /**
   * Elements in row-major order: a `Float32Array` for F32, a `Uint16Array` of bit patterns for
   * F16/BF16, an `Int32Array` for I32, or the little-endian bytes of any dtype as a `Uint8Array`.
   */
  readonly data: Uint8Array | Float32Array | Uint16Array | Int32Array;
}

/** The reference implementation refuses larger headers; a larger one means a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;

/**
 * How much an HTTP open asks for up front: enough for the header of a typical shard (tens of KB),
 * so most opens take one request.
 */
const FIRST_HTTP_CHUNK = 256 * 1024;

/**
 * Bytes per element of a dtype.
 *
 * @throws {CheckpointError} for a string that is not a safetensors dtype.
 */
export function dtypeSize(dtype: Dtype): number {
  const size = DTYPE_SIZES.get(dtype);
  if (size === undefined) {
    throw new CheckpointError(
      `unknown dtype ${quote(dtype)}; safetensors dtypes are ${[...DTYPE_SIZES.keys()].join(", ")}`,
    );
  }
  return size;
}

/**
 * Opens one `.safetensors` file and validates its header; tensor data stays on disk (or on the
 * server) until {@link TensorSource.read} asks for it.
 *
 * `source` is a path, a `file:` URL or an `http(s):` URL. Over HTTP the open asks for the first
 * 256 KiB (the header of most shards, and any tensors within them), then each read outside them
 * is one `Range` request; a server that ignores `Range` (answers 200 instead of 206) is refused
 * with a CheckpointError rather than downloaded whole, which would hold the whole file in memory.
 * Holes between tensors and bytes after the last one are accepted, as are tensors listed in any
 * order.
 *
 * @throws {CheckpointError} naming the file and, where there is one, the tensor: a missing or
 * too short file, a header length beyond the file or over 100 MB, a header that is not a UTF-8
 * JSON object, a schema violation, an unknown dtype, offsets out of order or beyond the data,
 * a byte length that disagrees with dtype and shape, overlapping tensors.
 *
 * @example
 * ```ts
 * import { decodeToF32, openSafetensors } from "@ahead/mtp/internals";
 * const st = await openSafetensors("model.safetensors");
 * try {
 *   for (const info of st.tensors.values()) {
 *     const values = decodeToF32(await st.read(info.name), info.dtype);
 *     console.log(info.name, info.shape, values.length);
 *   }
 * } finally {
 *   st.close();
 * }
 * ```
 */
export async function openSafetensors(
  source: string | URL,
  options: OpenOptions = {},
): Promise<TensorSource> {
  const location = locate(source);
  options.signal?.throwIfAborted();
  const bytes = await openBytes(location, options.signal);
  if (bytes === undefined) throw new CheckpointError(`${show(location)}: file not found`);
  return await openSource(bytes, options.signal);
}

/**
 * Opens a Hugging Face model folder: either one `model.safetensors`, or the shards named by
 * `model.safetensors.index.json` (`{ metadata?, weight_map: { tensorName: shardFile } }`).
 * When both are present the single file wins, as in `transformers`. All shards are opened at
 * once, so that a tensor the index names but its shard lacks is found before loading starts.
 * The merged `tensors` map holds exactly the tensors the index names, grouped by shard.
 *
 * `dir` is a path, a `file:` URL or an `http(s):` URL of the folder.
 *
 * @throws {CheckpointError} when neither layout is there (the message says which files were
 * expected), the index is malformed, a shard is missing or lacks a tensor the index assigns to
 * it (the message names the index, the shard and the tensor), or a file is malformed.
 *
 * @example
 * ```ts
 * import { openCheckpoint } from "@ahead/mtp/internals";
 * const ckpt = await openCheckpoint("./TinyLlama-1.1B");
 * try {
 *   const embed = ckpt.tensors.get("model.embed_tokens.weight");
 *   if (embed) console.log(embed.shape, embed.file, (await ckpt.read(embed.name)).byteLength);
 * } finally {
 *   ckpt.close();
 * }
 * ```
 */
export async function openCheckpoint(
  dir: string | URL,
  options: OpenOptions = {},
): Promise<Checkpoint> {
  const { signal } = options;
  const folder = locate(dir);
  signal?.throwIfAborted();
  const singleLocation = child(folder, "model.safetensors");
  const single = await openBytes(singleLocation, signal);
  if (single !== undefined) {
    const st = await openSource(single, signal);
    return { ...st, path: show(folder), files: [st.path], indexMetadata: undefined };
  }
  const indexLocation = child(folder, "model.safetensors.index.json");
  const indexName = show(indexLocation);
  const indexText = await readText(indexLocation, signal);
  if (indexText === undefined) {
    throw new CheckpointError(
      `${show(folder)}: no checkpoint found: expected model.safetensors, or ` +
        `model.safetensors.index.json and the shards it names${await strayShards(folder)}`,
    );
  }
  const index = parseIndex(indexText, indexName);

  // Shards in order of first mention, each with the tensors the index puts in it.
  const wanted = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(index.weight_map)) {
    if (
      shard === "" || shard.startsWith("/") || shard.includes("\\") ||
      /(^|\/)\.\.(\/|$)/.test(shard)
    ) {
      throw new CheckpointError(
        `${indexName}: tensor ${quote(tensor)} is mapped to ${quote(shard)}, which is not a file ` +
          `name inside the checkpoint folder`,
      );
    }
    const list = wanted.get(shard);
    if (list) list.push(tensor);
    else wanted.set(shard, [tensor]);
  }

  const shards: TensorSource[] = [];
  const owner = new Map<string, TensorSource>();
  const tensors = new Map<string, TensorInfo>();
  try {
    for (const [shard, names] of wanted) {
      const location = child(folder, shard);
      const bytes = await openBytes(location, signal);
      if (bytes === undefined) {
        throw new CheckpointError(
          `${indexName} maps tensor ${quote(names[0])} to ${show(location)}, which does not ` +
            `exist: the download is incomplete, or the index belongs to another checkpoint`,
        );
      }
      const st = await openSource(bytes, signal);
      shards.push(st);
      const missing = names.find((name) => !st.tensors.has(name));
      if (missing !== undefined) {
        throw new CheckpointError(
          `${indexName} maps tensor ${quote(missing)} to ${st.path}, but that file has no such ` +
            `tensor: the index and the shards come from different checkpoints`,
        );
      }
      // Tensors the shard holds but the index does not name are left out: the index decides.
      const named = new Set(names);
      for (const info of st.tensors.values()) {
        if (!named.has(info.name)) continue;
        tensors.set(info.name, info);
        owner.set(info.name, st);
      }
    }
  } catch (e) {
    for (const st of shards) st.close();
    throw e;
  }

  return {
    path: show(folder),
    files: shards.map((st) => st.path),
    metadata: shards[0]?.metadata ?? {},
    indexMetadata: index.metadata,
    tensors,
    read(name: string): Promise<Uint8Array> {
      const st = owner.get(name);
      if (st === undefined) {
        return Promise.reject(
          new CheckpointError(`${indexName}: the checkpoint has no tensor named ${quote(name)}`),
        );
      }
      return st.read(name);
    },
    close(): void {
      for (const st of shards) st.close();
    },
  };
}

/**
 * Writes tensors to a safetensors file that the Python `safetensors` library reads: a u64 LE
 * header size, a JSON header (`__metadata__` first, then the tensors in the given order, padded
 * with spaces to a multiple of 8 bytes as the reference implementation does), then the data,
 * contiguous and in the same order.
 *
 * The file is streamed to `${path}.tmp-<random>`, synced, and renamed onto `path`, so a crash
 * leaves either the old file or the complete new one; on any error the temporary file is removed.
 * Everything is validated before the temporary file is created.
 *
 * @throws {CheckpointError} naming the file and the tensor: a duplicate or reserved name, a
 * dtype it does not write, a shape that is not a list of integers >= 0, a data array of another
 * type than the dtype, or a byte length other than product(shape) * dtype size.
 *
 * @example
 * ```ts
 * import { writeSafetensors } from "@ahead/mtp/internals";
 * await writeSafetensors("step-100.safetensors", [
 *   { name: "lm_head.weight", dtype: "F32", shape: [2, 3], data: new Float32Array(6) },
 *   { name: "step", dtype: "I32", shape: [], data: Int32Array.of(100) },
 * ], { format: "pt" });
 * ```
 */
export async function writeSafetensors(
  path: string | URL,
  tensors: Iterable<TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const target = path instanceof URL ? fileURLToPath(path) : path;
  const { header, chunks } = prepareWrite(target, tensors, metadata);
  const tmp = `${target}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true });
    await writeAll(file, header);
    for (const chunk of chunks) await writeAll(file, chunk);
    // Without the sync, a power loss after the rename can leave an empty file under the new name.
    await file.sync();
    file.close();
    file = undefined;
    await Deno.rename(tmp, target);
  } catch (e) {
    file?.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Decodes F32, F16 or BF16 tensor bytes to f32 values. For F32 at a 4-byte aligned offset the
 * result is a view that shares memory with `bytes`; otherwise it is a copy. BF16 is exact (the
 * 16 bits become the top half of an f32).
 *
 * @throws {CheckpointError} for any other dtype, or a byte length that is not a whole number of
 * elements.
 */
export function decodeToF32(bytes: Uint8Array, dtype: Dtype): Float32Array {
  switch (dtype) {
    case "F32": {
      const { buffer, byteOffset, length } = aligned(bytes, 4, dtype);
      return new Float32Array(buffer, byteOffset, length);
    }
    case "F16": {
      const { buffer, byteOffset, length } = aligned(bytes, 2, dtype);
      return new Float32Array(new Float16Array(buffer, byteOffset, length));
    }
    case "BF16": {
      const { buffer, byteOffset, length } = aligned(bytes, 2, dtype);
      const halves = new Uint16Array(buffer, byteOffset, length);
      const out = new Uint32Array(length);
      for (let i = 0; i < length; i++) out[i] = halves[i] << 16;
      return new Float32Array(out.buffer);
    }
    default:
      throw unsupported(dtype);
  }
}

/**
 * Decodes F32, F16 or BF16 tensor bytes to IEEE half-precision bit patterns, the layout of `f16`
 * GPU buffers. F32 and BF16 values are rounded to the nearest f16, ties to even, exactly as
 * `Float16Array` does (overflow becomes infinity). For F16 at an even offset the result is a view
 * that shares memory with `bytes`.
 *
 * @throws {CheckpointError} for any other dtype, or a byte length that is not a whole number of
 * elements.
 */
export function decodeToF16Bits(bytes: Uint8Array, dtype: Dtype): Uint16Array {
  switch (dtype) {
    case "F16": {
      const { buffer, byteOffset, length } = aligned(bytes, 2, dtype);
      return new Uint16Array(buffer, byteOffset, length);
    }
    case "F32":
    case "BF16":
      return new Uint16Array(new Float16Array(decodeToF32(bytes, dtype)).buffer);
    default:
      throw unsupported(dtype);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Random access to the bytes of one file, local or remote. */
interface ByteSource {
  /** Path or URL, for messages. */
  readonly name: string;
  readonly size: number;
  readAt(offset: number, length: number): Promise<Uint8Array>;
  close(): void;
}

type Location = { kind: "file"; path: string } | { kind: "http"; url: URL };

function locate(source: string | URL): Location {
  if (typeof source === "string" && !/^(https?:\/\/|file:)/i.test(source)) {
    return { kind: "file", path: source };
  }
  let url: URL;
  try {
    url = new URL(source);
    if (url.protocol === "file:") return { kind: "file", path: fileURLToPath(url) };
  } catch (e) {
    throw new CheckpointError(`${source}: not a valid URL (${errorText(e)})`, { cause: e });
  }
  if (url.protocol === "http:" || url.protocol === "https:") return { kind: "http", url };
  throw new CheckpointError(
    `${url.href}: unsupported URL scheme ${url.protocol}; use a path, a file: or an http(s): URL`,
  );
}

function child(folder: Location, name: string): Location {
  if (folder.kind === "file") return { kind: "file", path: join(folder.path, name) };
  const base = new URL(folder.url.href);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  return { kind: "http", url: new URL(name, base) };
}

function show(location: Location): string {
  return location.kind === "file" ? location.path : location.url.href;
}

/** Opens the bytes of a file; `undefined` when there is no such file. */
function openBytes(location: Location, signal?: AbortSignal): Promise<ByteSource | undefined> {
  return location.kind === "file"
    ? openFileBytes(location.path)
    : openHttpBytes(location.url, signal);
}

async function openFileBytes(path: string): Promise<ByteSource | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  let size: number;
  try {
    const stat = await file.stat();
    if (!stat.isFile) throw new CheckpointError(`${path}: not a regular file`);
    size = stat.size;
  } catch (e) {
    file.close();
    throw e;
  }
  let closed = false;
  // One handle, one file position: reads are queued so that a seek is never followed by another
  // read's seek before its own read.
  let queue: Promise<unknown> = Promise.resolve();
  const readAt = async (offset: number, length: number): Promise<Uint8Array> => {
    if (closed) throw new CheckpointError(`${path}: read after close()`);
    const out = new Uint8Array(length);
    try {
      await file.seek(offset, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < length) {
        const n = await file.read(out.subarray(filled));
        if (n === null) {
          throw new CheckpointError(
            `${path}: the file ends at byte ${offset + filled}, inside the ${length} bytes ` +
              `expected from byte ${offset}: it was truncated or replaced while open`,
          );
        }
        filled += n;
      }
    } catch (e) {
      if (closed && !(e instanceof CheckpointError)) {
        throw new CheckpointError(`${path}: closed while a read was in flight`, { cause: e });
      }
      throw e;
    }
    return out;
  };
  return {
    name: path,
    size,
    readAt(offset, length) {
      const result = queue.then(() => readAt(offset, length));
      queue = result.catch(() => {});
      return result;
    },
    close() {
      if (closed) return;
      closed = true;
      file.close();
    },
  };
}

async function httpGet(url: URL, range: string | undefined, signal?: AbortSignal) {
  const headers: Record<string, string> = { "Accept-Encoding": "identity" };
  if (range !== undefined) headers.Range = range;
  try {
    return await fetch(url, { headers, signal });
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    throw new CheckpointError(`${url.href}: request failed: ${errorText(e)}`, { cause: e });
  }
}

async function httpBody(url: URL, response: Response, signal?: AbortSignal): Promise<Uint8Array> {
  try {
    return new Uint8Array(await response.arrayBuffer());
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    throw new CheckpointError(`${url.href}: download failed: ${errorText(e)}`, { cause: e });
  }
}

async function httpStatusError(url: URL, response: Response): Promise<CheckpointError> {
  await response.body?.cancel();
  if (response.status === 200) {
    return new CheckpointError(
      `${url.href}: the server ignored the Range header (HTTP 200 instead of 206). Tensors are ` +
        `read over HTTP with range requests, one at a time; download the file and open it from ` +
        `disk, or serve it from a server that supports Range`,
    );
  }
  return new CheckpointError(`${url.href}: HTTP ${response.status} ${response.statusText}`);
}

async function openHttpBytes(url: URL, signal?: AbortSignal): Promise<ByteSource | undefined> {
  const first = await httpGet(url, `bytes=0-${FIRST_HTTP_CHUNK - 1}`, signal);
  if (first.status === 404 || first.status === 410) {
    await first.body?.cancel();
    return undefined;
  }
  if (first.status === 416) {
    await first.body?.cancel();
    return { name: url.href, size: 0, readAt: () => Promise.resolve(new Uint8Array()), close() {} };
  }
  if (first.status !== 206) throw await httpStatusError(url, first);
  const contentRange = first.headers.get("content-range") ?? "missing";
  const total = /^bytes\s+\d+-\d+\/(\d+)\s*$/i.exec(contentRange);
  if (total === null) {
    await first.body?.cancel();
    throw new CheckpointError(
      `${url.href}: the server's Content-Range (${contentRange}) does not give the file size`,
    );
  }
  const size = Number(total[1]);
  const prefix = await httpBody(url, first, signal);
  if (prefix.length !== Math.min(size, FIRST_HTTP_CHUNK)) {
    throw new CheckpointError(
      `${url.href}: asked for the first ${Math.min(size, FIRST_HTTP_CHUNK)} bytes, got ` +
        `${prefix.length}`,
    );
  }
  return {
    name: url.href,
    size,
    async readAt(offset, length) {
      if (offset + length <= prefix.length) return prefix.slice(offset, offset + length);
      if (length === 0) return new Uint8Array();
      signal?.throwIfAborted();
      const last = offset + length - 1;
      const response = await httpGet(url, `bytes=${offset}-${last}`, signal);
      if (response.status !== 206) throw await httpStatusError(url, response);
      const body = await httpBody(url, response, signal);
      const range = response.headers.get("content-range") ?? "missing";
      if (body.length !== length || !range.replace(/\s+/g, " ").startsWith(`bytes ${offset}-`)) {
        throw new CheckpointError(
          `${url.href}: asked for bytes ${offset}-${last}, got ${body.length} bytes ` +
            `(Content-Range: ${range}): the file changed on the server or was truncated`,
        );
      }
      return body;
    },
    close() {},
  };
}

/** The text of a small file, `undefined` when there is no such file. */
async function readText(location: Location, signal?: AbortSignal): Promise<string | undefined> {
  let bytes: Uint8Array;
  if (location.kind === "file") {
    try {
      bytes = await Deno.readFile(location.path, { signal });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  } else {
    const response = await httpGet(location.url, undefined, signal);
    if (response.status === 404 || response.status === 410) {
      await response.body?.cancel();
      return undefined;
    }
    if (!response.ok) throw await httpStatusError(location.url, response);
    bytes = await httpBody(location.url, response, signal);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new CheckpointError(`${show(location)}: not UTF-8 text`, { cause: e });
  }
}

/** For the "no checkpoint" message: the safetensors files that are there, if any. */
async function strayShards(folder: Location): Promise<string> {
  if (folder.kind !== "file") return "";
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(folder.path)) {
      if (entry.name.endsWith(".safetensors")) found.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return " (the folder does not exist)";
    return "";
  }
  if (found.length === 0) return "";
  found.sort();
  const list = found.length > 5 ? [...found.slice(0, 5), "..."] : found;
  return ` (found ${list.join(", ")} but no index to say which tensor is where)`;
}

const indexSchema = z.object({
  metadata: z.record(z.string(), z.unknown(), { error: "metadata must be an object" }).optional(),
  weight_map: z.record(z.string(), z.string({ error: "shard file names must be strings" }), {
    error: "weight_map must be an object mapping tensor names to shard file names",
  }),
}, { error: "the index must be a JSON object" });

function parseIndex(text: string, indexName: string): z.infer<typeof indexSchema> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${indexName}: not valid JSON (${errorText(e)})`, { cause: e });
  }
  const parsed = indexSchema.safeParse(json);
  if (!parsed.success) {
    throw new CheckpointError(`${indexName}: ${formatIssues(parsed.error)}`);
  }
  return parsed.data;
}

const offset = z.int({ error: "data_offsets must hold integers" }).min(0, {
  error: "data_offsets must be >= 0",
});

const entrySchema = z.object({
  dtype: z.string({ error: "dtype must be a string" }),
  shape: z.array(
    z.int({ error: "shape must hold integers" }).min(0, { error: "shape must hold sizes >= 0" }),
    { error: "shape must be an array of integers" },
  ),
  data_offsets: z.tuple([offset, offset], { error: "data_offsets must be [begin, end]" }),
}, { error: "the entry must be an object with dtype, shape and data_offsets" });

const metadataSchema = z.record(z.string(), z.string({ error: "values must be strings" }), {
  error: "__metadata__ must be an object of strings",
});

/** Parses and checks the header of `bytes`; closes `bytes` when that fails. */
async function openSource(bytes: ByteSource, signal?: AbortSignal): Promise<TensorSource> {
  let header: { metadata: Record<string, string>; tensors: Map<string, TensorInfo> };
  try {
    header = await parseHeader(bytes);
    signal?.throwIfAborted();
  } catch (e) {
    bytes.close();
    throw e;
  }
  const { metadata, tensors } = header;
  const file = bytes.name;
  let closed = false;
  return {
    path: file,
    metadata,
    tensors,
    async read(name: string): Promise<Uint8Array> {
      if (closed) throw new CheckpointError(`${file}: read(${quote(name)}) after close()`);
      const info = tensors.get(name);
      if (info === undefined) {
        throw new CheckpointError(
          `${file}: no tensor named ${quote(name)} (the file has ${tensors.size} tensors)`,
        );
      }
      signal?.throwIfAborted();
      return await bytes.readAt(info.byteOffset, info.byteLength);
    },
    close() {
      closed = true;
      bytes.close();
    },
  };
}

async function parseHeader(
  bytes: ByteSource,
): Promise<{ metadata: Record<string, string>; tensors: Map<string, TensorInfo> }> {
  const file = bytes.name;
  if (bytes.size < 8) {
    throw new CheckpointError(
      `${file}: the file has ${bytes.size} bytes, fewer than the 8 of the header length: it is ` +
        `not a safetensors file, or it was truncated`,
    );
  }
  const lengthField = await bytes.readAt(0, 8);
  const declared = new DataView(lengthField.buffer, lengthField.byteOffset).getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      `${file}: the header length field says ${declared} bytes, over the 100 MB limit: the file ` +
        `is corrupt or not a safetensors file`,
    );
  }
  const headerLength = Number(declared);
  if (8 + headerLength > bytes.size) {
    throw new CheckpointError(
      `${file}: the header length field says ${headerLength} bytes, beyond the end of the file ` +
        `(${bytes.size - 8} bytes follow it): the file is truncated or corrupt`,
    );
  }
  const raw = await bytes.readAt(8, headerLength);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch (e) {
    throw new CheckpointError(`${file}: the header is not valid UTF-8: the file is corrupt`, {
      cause: e,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(
      `${file}: the header is not valid JSON (${errorText(e)}): the file is corrupt`,
      { cause: e },
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new CheckpointError(`${file}: the header is ${describeValue(json)}, not a JSON object`);
  }

  const dataStart = 8 + headerLength;
  const dataSize = bytes.size - dataStart;
  let metadata: Record<string, string> = {};
  const found: TensorInfo[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") {
      const parsed = metadataSchema.safeParse(value);
      if (!parsed.success) {
        throw new CheckpointError(`${file}: __metadata__: ${formatIssues(parsed.error)}`);
      }
      metadata = parsed.data;
      continue;
    }
    const where = `${file}: tensor ${quote(name)}`;
    const parsed = entrySchema.safeParse(value);
    if (!parsed.success) throw new CheckpointError(`${where}: ${formatIssues(parsed.error)}`);
    const { dtype, shape, data_offsets: [begin, end] } = parsed.data;
    const size = DTYPE_SIZES.get(dtype);
    if (size === undefined) {
      throw new CheckpointError(
        `${where}: unknown dtype ${quote(dtype)}; safetensors dtypes are ` +
          [...DTYPE_SIZES.keys()].join(", "),
      );
    }
    if (begin > end) {
      throw new CheckpointError(`${where}: data_offsets [${begin}, ${end}] begin after they end`);
    }
    if (end > dataSize) {
      throw new CheckpointError(
        `${where}: data_offsets [${begin}, ${end}] end beyond the data section ` +
          `(${dataSize} bytes): the file is truncated or corrupt`,
      );
    }
    const count = elementCount(shape);
    if (count === undefined || count * size !== end - begin) {
      const need = count === undefined ? "more bytes than any file holds" : `${count * size} bytes`;
      throw new CheckpointError(
        `${where}: dtype ${dtype} and shape [${shape.join(", ")}] need ${need}, but ` +
          `data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    found.push({
      name,
      dtype: dtype as Dtype,
      shape,
      byteOffset: dataStart + begin,
      byteLength: end - begin,
      file,
    });
  }

  // Sorted by offset, so a tensor that starts before the previous one ends overlaps it. Empty
  // tensors own no bytes and cannot overlap anything.
  found.sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  let previous: TensorInfo | undefined;
  for (const info of found) {
    if (info.byteLength === 0) continue;
    if (previous && info.byteOffset < previous.byteOffset + previous.byteLength) {
      const span = (t: TensorInfo) =>
        `[${t.byteOffset - dataStart}, ${t.byteOffset + t.byteLength - dataStart}]`;
      throw new CheckpointError(
        `${file}: tensors ${quote(previous.name)} ${span(previous)} and ${quote(info.name)} ` +
          `${span(info)} overlap: the file is corrupt`,
      );
    }
    previous = info;
  }
  return { metadata, tensors: new Map(found.map((info) => [info.name, info])) };
}

/** product(shape), or `undefined` when it is too large to be a byte count. */
function elementCount(shape: readonly number[]): number | undefined {
  if (shape.includes(0)) return 0;
  let count = 1;
  for (const dim of shape) {
    count *= dim;
    // 8 bytes per element at most: keep count * size an exact integer.
    if (count > Number.MAX_SAFE_INTEGER / 8) return undefined;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// Writing

const ARRAY_DTYPES: ReadonlyMap<unknown, readonly WritableDtype[]> = new Map<
  unknown,
  readonly WritableDtype[]
>([
  [Float32Array, ["F32"]],
  [Uint16Array, ["F16", "BF16"]],
  [Int32Array, ["I32"]],
]);

function prepareWrite(
  target: string,
  tensors: Iterable<TensorToWrite>,
  metadata: Record<string, string> | undefined,
): { header: Uint8Array; chunks: Uint8Array[] } {
  const parts: string[] = [];
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        throw new CheckpointError(
          `${target}: metadata ${quote(key)} is ${describeValue(value)}; values must be strings`,
        );
      }
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const chunks: Uint8Array[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const { name, dtype, shape, data } of tensors) {
    const where = `${target}: tensor ${quote(name)}`;
    if (typeof name !== "string" || name === "" || name === "__metadata__") {
      throw new CheckpointError(
        `${where}: a tensor name must be a non-empty string other than __metadata__`,
      );
    }
    if (seen.has(name)) throw new CheckpointError(`${where}: the name is used twice`);
    seen.add(name);
    if (!(["F32", "F16", "BF16", "I32", "U8", "I8"] as unknown[]).includes(dtype)) {
      throw new CheckpointError(
        `${where}: cannot write dtype ${quote(dtype)}; use F32, F16, BF16, I32, U8 or I8`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new CheckpointError(`${where}: shape must be an array of integers >= 0`);
    }
    if (!(data instanceof Uint8Array)) {
      const allowed = ARRAY_DTYPES.get(data?.constructor);
      if (allowed === undefined || !allowed.includes(dtype)) {
        throw new CheckpointError(
          `${where}: data is ${describeValue(data)}, which does not hold ${dtype} elements; ` +
            `pass its bytes as a Uint8Array to write them as they are`,
        );
      }
    }
    const count = elementCount(shape);
    const size = dtypeSize(dtype);
    if (count === undefined || count * size !== data.byteLength) {
      throw new CheckpointError(
        `${where}: dtype ${dtype} and shape [${shape.join(", ")}] need ${
          count === undefined ? "too many" : count * size
        } bytes, but data has ${data.byteLength}`,
      );
    }
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${shape.join(",")}],` +
        `"data_offsets":[${offset},${offset + data.byteLength}]}`,
    );
    offset += data.byteLength;
    chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  // Padding the header to a multiple of 8 keeps the data section 8-byte aligned in the file, so
  // readers that map the file can view the first tensor in place.
  const padded = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, chunks };
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

// ---------------------------------------------------------------------------------------------
// Helpers

function aligned(
  bytes: Uint8Array,
  elementSize: number,
  dtype: Dtype,
): { buffer: ArrayBufferLike; byteOffset: number; length: number } {
  if (bytes.byteLength % elementSize !== 0) {
    throw new CheckpointError(
      `${dtype} data must be a whole number of ${elementSize}-byte elements, got ` +
        `${bytes.byteLength} bytes`,
    );
  }
  // Typed array views need an offset that is a multiple of the element size.
  const source = bytes.byteOffset % elementSize === 0 ? bytes : bytes.slice();
  return {
    buffer: source.buffer,
    byteOffset: source.byteOffset,
    length: source.byteLength / elementSize,
  };
}

function unsupported(dtype: string): CheckpointError {
  return new CheckpointError(
    `dtype ${quote(dtype)} is not supported for weights: weights must be F32, F16 or BF16; ` +
      `convert the checkpoint (e.g. torch: model.to(torch.float16)) and save it again`,
  );
}

/** A name as messages show it: quoted, escaped, and cut short if a corrupt file made it huge. */
function quote(name: unknown): string {
  const text = JSON.stringify(String(name));
  return text.length > 200 ? `${text.slice(0, 200)}..."` : text;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => {
      const at = issue.path.length > 0 ? `${issue.path.map(String).join(".")}: ` : "";
      return `${at}${issue.message}`;
    })
    .join("; ");
}
