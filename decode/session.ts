/**
 * One generation's GPU side: the state, token and block buffers, the KV caches, the prefill
 * programs and the step program (forward over a block, verify, draft). Steps are recorded into
 * command buffers ahead of time; nothing in a step needs the host.
 * @module
 */
import { type Dispatch, encode } from "../kernels/dispatch.ts";
import { argmax, verify } from "../kernels/decode_ops.ts";
import { ropeTable } from "../kernels/rope_kv.ts";
import type { Model } from "../model/model.ts";
import {
  allocKv,
  allocScratch,
  type ForwardContext,
  type KvCache,
  type Scratch,
  trunk,
  unembed,
} from "../model/trunk.ts";
import type { AttachedDrafts, DraftSource } from "./drafts.ts";
import { NO_TOKEN, S, STATE_WORDS } from "./state.ts";

/** Rows of one prefill chunk: long prompts are processed in blocks of this many positions. */
export const PREFILL_CHUNK = 64;
const TIMESTAMP_BYTES = 256; // resolveQuerySet writes at 256-byte aligned offsets

/** A readback slot: state and tokens are copied here at the end of a batch of steps. */
export interface Readback {
  buffer: GPUBuffer;
  resolve: GPUBuffer | null;
}

/** Contents of a readback: timestamps (ns, when available), the state words and the tokens. */
export interface Snapshot {
  gpuBegin: bigint | null;
  gpuEnd: bigint | null;
  state: Uint32Array;
  tokens: Uint32Array;
}

/** The GPU side of one generation. `dispose()` frees every buffer it made. */
export class Session {
  readonly model: Model;
  /** Rows per block: 1 (greedy) or nFuture (speculative). */
  readonly k: number;
  readonly capacity: number;
  readonly ctx: ForwardContext;
  /** [STATE_WORDS] see decode/state.ts */
  readonly state: GPUBuffer;
  /** [k] token ids of the current block */
  readonly ids: GPUBuffer;
  /** [capacity] the sequence: prompt, then generated tokens */
  readonly tokens: GPUBuffer;
  /** [k] the trunk's argmax per block row */
  readonly picks: GPUBuffer;
  /** [k, vocab] head-1 logits of the block */
  readonly logits: GPUBuffer;
  /** Activations of the decode block. */
  readonly block: Scratch;
  readonly kv: KvCache[];
  readonly drafts: AttachedDrafts | null;
  /** The launches of one decode step. */
  readonly step: Dispatch[];
  readonly #scope = new Set<GPUBuffer>();
  readonly #prefill = new Map<number, { ids: GPUBuffer; program: Dispatch[] }>();
  readonly #querySet: GPUQuerySet | null = null;
  #disposed = false;

  constructor(
    model: Model,
    o: { k: number; drafts: DraftSource | null; promptLength: number; timestamps?: boolean },
  ) {
    this.model = model;
    this.k = o.k;
    const c = model.config;
    const gpu = model.gpu;
    // Rows of the last block may run up to k - 1 positions past maxSeqLen; they are never kept.
    this.capacity = c.maxSeqLen + c.nFuture;
    const built = gpu.inScope(this.#scope, () => {
      const state = gpu.storage("state", STATE_WORDS * 4);
      const ctx: ForwardContext = {
        gpu,
        config: c,
        state,
        capacity: this.capacity,
        rope: gpu.storage("rope", ropeTable(this.capacity, c.headDim, c.ropeTheta)),
      };
      const ids = gpu.storage("ids", this.k * 4);
      const picks = gpu.storage("picks", this.k * 4);
      const tokens = gpu.storage("tokens", this.capacity * 4);
      const logits = gpu.storage("logits", this.k * c.vocabSize * 4);
      const block = allocScratch(gpu, c, this.k, this.capacity);
      const kv = allocKv(gpu, c, this.capacity, c.nLayers);
      const drafts = o.drafts?.attach({
        ctx,
        weights: model.weights,
        ids,
        k: this.k,
        promptLength: o.promptLength,
      }) ?? null;
      const w = model.weights;
      const step = [
        ...trunk(ctx, w, { ids, kv, s: block }),
        ...(drafts?.beforeVerify(block) ?? []),
        ...unembed(ctx, w, { logits, x: block.h, s: block, label: "head1" }),
        argmax(gpu, { state, out: picks, logits, rows: this.k, n: c.vocabSize, label: "argmax" }),
        verify(gpu, { state, picks, ids, tokens, k: this.k }),
        ...(drafts?.afterVerify(block) ?? []),
      ];
      return { state, ctx, ids, picks, tokens, logits, block, kv, drafts, step };
    });
    ({
      state: this.state,
      ctx: this.ctx,
      ids: this.ids,
      picks: this.picks,
      tokens: this.tokens,
      logits: this.logits,
      block: this.block,
      kv: this.kv,
      drafts: this.drafts,
      step: this.step,
    } = built);
    if (o.timestamps && gpu.hasTimestamps) {
      this.#querySet = gpu.device.createQuerySet({ type: "timestamp", count: 2 });
    }
  }

  /** Whether batches record GPU timestamps. */
  get timed(): boolean {
    return this.#querySet !== null;
  }

  #prefillProgram(rows: number) {
    let p = this.#prefill.get(rows);
    if (!p) {
      const gpu = this.model.gpu;
      p = gpu.inScope(this.#scope, () => {
        const ids = gpu.storage(`prefill ids[${rows}]`, rows * 4);
        const s = allocScratch(gpu, this.model.config, rows, this.capacity);
        const program = [
          ...trunk(this.ctx, this.model.weights, { ids, kv: this.kv, s }),
          ...(this.drafts?.beforeVerify(s) ?? []),
        ];
        return { ids, program };
      });
      this.#prefill.set(rows, p);
    }
    return p;
  }

  /**
   * Queues the prompt: every position but the last goes through the trunk (filling the KV
   * caches) in chunks; the last prompt token is row 0 of the first decode step. No host sync.
   */
  start(prompt: readonly number[], o: { limit: number; stop: readonly number[] }): void {
    const gpu = this.model.gpu;
    const p = prompt.length;
    gpu.write(this.tokens, Uint32Array.from(prompt));
    const state = new Uint32Array(STATE_WORDS);
    for (let pos = 0; pos < p - 1; pos += PREFILL_CHUNK) {
      const rows = Math.min(PREFILL_CHUNK, p - 1 - pos);
      const { ids, program } = this.#prefillProgram(rows);
      state[S.POS] = pos;
      gpu.write(this.state, state);
      const enc = gpu.device.createCommandEncoder();
      enc.copyBufferToBuffer(this.tokens, pos * 4, ids, 0, rows * 4);
      const pass = enc.beginComputePass();
      encode(pass, program);
      pass.end();
      gpu.device.queue.submit([enc.finish()]);
    }
    state[S.POS] = p - 1;
    state[S.LEN] = p;
    state[S.LIMIT] = o.limit;
    state[S.NSTOP] = o.stop.length;
    state.set(o.stop, S.STOP);
    gpu.write(this.state, state);
    const first = [prompt[p - 1], ...(this.drafts?.firstDrafts ?? [])];
    gpu.write(this.ids, Uint32Array.from(first.map((t) => t ?? NO_TOKEN)));
    gpu.check("prefill");
  }

  /** A readback slot for {@link encodeSteps}. */
  readback(): Readback {
    const gpu = this.model.gpu;
    return gpu.inScope(this.#scope, () => ({
      buffer: gpu.buffer(
        "readback",
        TIMESTAMP_BYTES + (STATE_WORDS + this.capacity) * 4,
        GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      ),
      resolve: this.#querySet
        ? gpu.buffer("timestamps", 16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC)
        : null,
    }));
  }

  /** Records `n` decode steps in one compute pass, then copies state and tokens into `slot`. */
  encodeSteps(n: number, slot: Readback): GPUCommandBuffer {
    const enc = this.model.gpu.device.createCommandEncoder();
    const qs = this.#querySet;
    const pass = enc.beginComputePass(
      qs
        ? {
          timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
        }
        : {},
    );
    for (let i = 0; i < n; i++) encode(pass, this.step);
    pass.end();
    if (qs && slot.resolve) {
      enc.resolveQuerySet(qs, 0, 2, slot.resolve, 0);
      enc.copyBufferToBuffer(slot.resolve, 0, slot.buffer, 0, 16);
    }
    enc.copyBufferToBuffer(this.state, 0, slot.buffer, TIMESTAMP_BYTES, STATE_WORDS * 4);
    enc.copyBufferToBuffer(
      this.tokens,
      0,
      slot.buffer,
      TIMESTAMP_BYTES + STATE_WORDS * 4,
      this.capacity * 4,
    );
    return enc.finish();
  }

  /** Reads a mapped readback slot and unmaps it. */
  snapshot(slot: Readback): Snapshot {
    const bytes = slot.buffer.getMappedRange().slice(0);
    slot.buffer.unmap();
    const ts = new BigUint64Array(bytes, 0, 2);
    return {
      gpuBegin: this.#querySet ? ts[0] : null,
      gpuEnd: this.#querySet ? ts[1] : null,
      state: new Uint32Array(bytes, TIMESTAMP_BYTES, STATE_WORDS),
      tokens: new Uint32Array(bytes, TIMESTAMP_BYTES + STATE_WORDS * 4, this.capacity),
    };
  }

  /** Frees every buffer this session made. Call only once no submitted work uses them. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.model.gpu.freeAll(this.#scope);
    this.#querySet?.destroy();
  }
}
