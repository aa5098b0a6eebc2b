/**
 * Training data: text files (or folders of them) turned into one token stream, a held-out split,
 * and seeded batches of windows. Batches are plain host arrays; the trainer uploads them ahead
 * of the GPU with queue writes, so no step waits on the host.
 * @module
 */
import { join } from "node:path";
import { InvalidInputError } from "../gpu/errors.ts";
import type { Tokenizer } from "../model/tokenizer.ts";

/** Token streams for training and held-out evaluation. */
export interface Corpus {
  /** The training tokens, documents joined by the separator. */
  train: Uint32Array;
  /** The held-out tokens. */
  heldout: Uint32Array;
  /** Files read for each split. */
  files: { train: number; heldout: number };
}

/** Where the text comes from. */
export interface CorpusOptions {
  /** Files or folders (read recursively) to train on. */
  train: readonly string[];
  /**
   * Files or folders held out entirely. When absent, the last `heldoutFraction` of the training
   * files (in name order) are held out instead.
   */
  heldout?: readonly string[];
  /** Share of files held out when `heldout` is not given (default 0.05). */
  heldoutFraction?: number;
  /** Token between documents (default: the tokenizer's first EOS id, else 0). */
  separator?: number;
}

async function listFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(p);
    } catch {
      throw new InvalidInputError(`training data: ${p} does not exist`);
    }
    if (info.isFile) out.push(p);
    else {
      const entries: string[] = [];
      for await (const e of Deno.readDir(p)) entries.push(e.name);
      out.push(...await listFiles(entries.sort().map((e) => join(p, e))));
    }
  }
  return out;
}

async function encodeFiles(files: string[], tok: Tokenizer, sep: number): Promise<Uint32Array> {
  const parts: number[][] = [];
  let n = 0;
  for (const f of files) {
    const ids = tok.encode(await Deno.readTextFile(f), { addSpecialTokens: false });
    ids.push(sep);
    parts.push(ids);
    n += ids.length;
  }
  const out = new Uint32Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Reads and tokenizes the training text.
 *
 * @throws {InvalidInputError} for paths that do not exist, or no text at all.
 */
export async function loadCorpus(tok: Tokenizer, o: CorpusOptions): Promise<Corpus> {
  let trainFiles = await listFiles(o.train);
  let heldoutFiles = o.heldout ? await listFiles(o.heldout) : [];
  if (!o.heldout) {
    const k = Math.max(1, Math.floor(trainFiles.length * (o.heldoutFraction ?? 0.05)));
    if (trainFiles.length < 2) {
      throw new InvalidInputError(
        `training data: ${trainFiles.length} file(s) found; give at least two, or a held-out set`,
      );
    }
    heldoutFiles = trainFiles.slice(-k);
    trainFiles = trainFiles.slice(0, -k);
  }
  const sep = o.separator ?? tok.eosIds[0] ?? 0;
  const train = await encodeFiles(trainFiles, tok, sep);
  const heldout = await encodeFiles(heldoutFiles, tok, sep);
  // Every file adds one separator: no more tokens than files means no text at all.
  if (train.length <= trainFiles.length) {
    throw new InvalidInputError(
      `training data: the training files (${o.train.join(", ")}) are empty: give text to train on`,
    );
  }
  return { train, heldout, files: { train: trainFiles.length, heldout: heldoutFiles.length } };
}

/** One batch: B windows of T inputs, and for head j (0-based) the targets t+j+1. */
export interface Batch {
  /** [B * T] input ids. */
  ids: Uint32Array;
  /** [nFuture][B * T] targets: head j's target for row r is the token j + 1 after it. */
  targets: Uint32Array[];
}

/** A seeded sampler of windows of `seqLen + nFuture` tokens from `stream`. */
export function batchSampler(
  stream: Uint32Array,
  o: { batch: number; seqLen: number; nFuture: number; seed: number },
): (step: number) => Batch {
  const span = o.seqLen + o.nFuture;
  if (stream.length < span + 1) {
    throw new InvalidInputError(
      `training data: ${stream.length} tokens, shorter than one training sequence ` +
        `(${o.seqLen} + ${o.nFuture} tokens): give more text or a shorter --seq-len`,
    );
  }
  return (step) => {
    let a = (o.seed * 0x9e3779b1 + step * 0x85ebca6b) >>> 0;
    const next = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const ids = new Uint32Array(o.batch * o.seqLen);
    const targets = Array.from({ length: o.nFuture }, () => new Uint32Array(o.batch * o.seqLen));
    for (let b = 0; b < o.batch; b++) {
      const s = Math.floor(next() * (stream.length - span));
      ids.set(stream.subarray(s, s + o.seqLen), b * o.seqLen);
      for (let j = 0; j < o.nFuture; j++) {
        targets[j].set(stream.subarray(s + j + 1, s + j + 1 + o.seqLen), b * o.seqLen);
      }
    }
    return { ids, targets };
  };
}

/** The held-out stream cut into consecutive batches (the last partial window dropped). */
export function heldoutBatches(
  stream: Uint32Array,
  o: { batch: number; seqLen: number; nFuture: number; maxBatches?: number },
): Batch[] {
  const span = o.seqLen + o.nFuture;
  const windows = Math.floor((stream.length - o.nFuture) / o.seqLen);
  const out: Batch[] = [];
  for (
    let w0 = 0;
    w0 + o.batch <= windows && out.length < (o.maxBatches ?? Infinity);
    w0 += o.batch
  ) {
    const ids = new Uint32Array(o.batch * o.seqLen);
    const targets = Array.from({ length: o.nFuture }, () => new Uint32Array(o.batch * o.seqLen));
    for (let b = 0; b < o.batch; b++) {
      const s = (w0 + b) * o.seqLen;
      if (s + span > stream.length) break;
      ids.set(stream.subarray(s, s + o.seqLen), b * o.seqLen);
      for (let j = 0; j < o.nFuture; j++) {
        targets[j].set(stream.subarray(s + j + 1, s + j + 1 + o.seqLen), b * o.seqLen);
      }
    }
    out.push({ ids, targets });
  }
  return out;
}
