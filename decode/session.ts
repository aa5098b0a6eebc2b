/**
 * One generation's GPU side: the state, token and block buffers, the KV caches, the prefill
 * programs and the step program (forward over a block, verify, draft), all in the generation's
 * own arena. Steps are recorded into command buffers ahead of time; nothing in a step needs the
 * host.
 * @module
 */
import type { Arena, Tensor } from "../gpu/arena.ts";
import { type Dispatch, encode } from "../kernels/dispatch.ts";
import { argmax } from "../kernels/argmax.ts";
import { ropeTable } from "../kernels/rope_kv.ts";
import { MAX_FUTURE, NO_TOKEN, S } from "../kernels/state.ts";
import { type Model, PREFILL_CHUNK } from "../heads/model.ts";
import type { Block } from "../heads/kind.ts";
import {
  allocKv,
  allocScratch,
  type ForwardContext,
  type KvCache,
  trunk,
  unembed,
} from "../model/trunk.ts";
import type { AttachedDrafts, DraftSource } from "./drafts.ts";
import { verify } from "./verify.ts";
import { sample, type Sampling, SAMPLING_TEST_HOOKS } from "./sample.ts";

const TIMESTAMP_BYTES = 256; // resolveQuerySet writes at 256-byte aligned offsets

/** A readback slot: state and tokens are copied here at the end of a batch of steps. */
export interface Readback {
  /** MAP_READ buffer: [timestamps (256 bytes), state words, tokens]. */
  buffer: GPUBuffer;
  /** Where timestamps are resolved before the copy, when recorded. */
  resolve: GPUBuffer | null;
}

/** Contents of a readback: timestamps (ns, when recorded), the state words and the tokens. */
export interface Snapshot {
  /** GPU time at the start of the batch's pass. */
  gpuBegin: bigint | null;
  /** GPU time at its end. */
  gpuEnd: bigint | null;
  /** The decode state after the batch (kernels/state.ts). */
  state: Uint32Array;
  /** The sequence: prompt, then generated tokens. */
  tokens: Uint32Array;
}

/** The GPU side of one generation. `dispose()` frees every buffer it made. */
export class Session {
  /** The model it decodes. */
  readonly model: Model;
  /** Rows per block: 1 (greedy) or the speculative block size. */
  readonly k: number;
  /** Positions the caches hold: maxSeqLen plus room for the last block's extra rows. */
  readonly capacity: number;
  /** Arena, config, RoPE table; `done` is the state buffer. */
  readonly ctx: ForwardContext;
  /** [S.WORDS] u32: the decode state. */
  readonly state: Tensor;
  /** [k] u32: token ids of the current block. */
  readonly ids: Tensor;
  /** [k] u32: positions of the current block's rows. */
  readonly positions: Tensor;
  /** [capacity] u32: the sequence, prompt then generated tokens. */
  readonly tokens: Tensor;
  /** [k] u32: the trunk's argmax per block row. */
  readonly picks: Tensor;
  /** [k, vocab]: head-1 logits of the block. */
  readonly logits: Tensor;
  /** The trunk's KV caches. */
  readonly kv: KvCache[];
  /** The draft source's launches, when speculative. */
  readonly drafts: AttachedDrafts | null;
  /** The launches of one decode step. */
  readonly step: Dispatch[];
  /** How many of them the draft source adds. */
  readonly draftDispatches: number;
  readonly #arena: Arena;
  readonly #prefill = new Map<number, { block: Block; program: Dispatch[] }>();
  readonly #querySet: GPUQuerySet | null = null;

  /** Builds the buffers and the step program; `drafts` is null for greedy decoding. */
  constructor(
    model: Model,
    o: {
      k: number;
      drafts: DraftSource | null;
      promptLength: number;
      timestamps?: boolean;
      /** Draw tokens (and accept drafts) by sampling; null or absent: greedy. */
      sampling?: Sampling | null;
    },
  ) {
    this.model = model;
    this.k = o.k;
    const c = model.config;
    const a = this.#arena = model.gpu.arena("generation");
    // Rows of the last block may run up to k - 1 positions past maxSeqLen; they are never kept.
    this.capacity = c.maxSeqLen + MAX_FUTURE;
    this.state = a.tensor("state", [S.WORDS], "u32");
    this.ctx = {
      arena: a,
      config: c,
      capacity: this.capacity,
      rope: a.tensor(
        "rope",
        [this.capacity, c.headDim / 2, 2],
        "f32",
        ropeTable(this.capacity, c),
      ),
      done: this.state.buffer,
    };
    this.ids = a.tensor("ids", [this.k], "u32");
    this.positions = a.tensor("positions", [this.k], "u32");
    this.picks = a.tensor("picks", [this.k], "u32");
    this.tokens = a.tensor("tokens", [this.capacity], "u32");
    this.logits = a.tensor("logits", [this.k, c.vocabSize]);
    this.kv = allocKv(a, c, this.capacity, c.nLayers);
    this.drafts = o.drafts?.attach({
      model,
      ctx: this.ctx,
      state: this.state,
      ids: this.ids,
      k: this.k,
      promptLength: o.promptLength,
      positions: this.positions,
      tokens: this.tokens,
    }) ?? null;
    const block: Block = {
      s: allocScratch(a, c, this.k, this.capacity),
      ids: this.ids,
      positions: this.positions,
    };
    const done = this.ctx.done;
    const before = this.drafts?.beforeVerify(block) ?? [];
    const after = this.drafts?.afterVerify(block) ?? [];
    this.draftDispatches = before.length + after.length;
    this.step = [
      ...trunk(this.ctx, model.trunk, {
        ids: this.ids,
        positions: this.positions,
        kv: this.kv,
        s: block.s,
      }),
      ...before,
      ...unembed(this.ctx, model.trunk, {
        logits: this.logits,
        x: block.s.h,
        s: block.s,
        label: "head1",
      }),
      ...(o.sampling
        ? sample(a, {
          state: this.state,
          logits: this.logits,
          ids: this.ids,
          positions: this.positions,
          tokens: this.tokens,
          seen: a.tensor("seen", [this.k, Math.ceil(c.vocabSize / 32)], "u32"),
          picks: this.picks,
          z: a.tensor("sampling z", [this.k, c.vocabSize]),
          rows: this.k,
          vocab: c.vocabSize,
          sampling: o.sampling,
          acceptAll: SAMPLING_TEST_HOOKS.acceptAllDrafts,
        })
        : argmax(a, {
          logits: this.logits,
          out: this.picks,
          rows: this.k,
          n: c.vocabSize,
          done,
          label: "argmax",
        })),
      ...verify(a, {
        state: this.state,
        picks: this.picks,
        ids: this.ids,
        tokens: this.tokens,
        positions: this.positions,
        k: this.k,
      }),
      ...after,
    ];
    if (o.timestamps && model.gpu.hasTimestamps) {
      this.#querySet = model.gpu.device.createQuerySet({ type: "timestamp", count: 2 });
    }
  }

  /** Whether batches record GPU timestamps. */
  get timed(): boolean {
    return this.#querySet !== null;
  }

  #prefillProgram(rows: number) {
    let p = this.#prefill.get(rows);
    if (!p) {
      const a = this.#arena;
      const block: Block = {
        s: allocScratch(a, this.model.config, rows, this.capacity),
        ids: a.tensor(`prefill ids[${rows}]`, [rows], "u32"),
        positions: a.tensor(`prefill positions[${rows}]`, [rows], "u32"),
        next: this.tokens, // the prompt: every prefill row's next token is known
      };
      const program = [
        ...trunk(this.ctx, this.model.trunk, {
          ids: block.ids,
          positions: block.positions,
          kv: this.kv,
          s: block.s,
        }),
        ...(this.drafts?.beforeVerify(block) ?? []),
      ];
      p = { block, program };
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
    const a = this.#arena;
    const p = prompt.length;
    a.write(this.tokens.buffer, Uint32Array.from(prompt));
    for (let pos = 0; pos < p - 1; pos += PREFILL_CHUNK) {
      const rows = Math.min(PREFILL_CHUNK, p - 1 - pos);
      const { block, program } = this.#prefillProgram(rows);
      // Queue writes are ordered with submits, so chunks of one size can share these buffers.
      a.write(block.positions.buffer, Uint32Array.from({ length: rows }, (_, i) => pos + i));
      const enc = gpu.device.createCommandEncoder();
      enc.copyBufferToBuffer(this.tokens.buffer, pos * 4, block.ids.buffer, 0, rows * 4);
      const pass = enc.beginComputePass();
      encode(pass, program);
      pass.end();
      gpu.device.queue.submit([enc.finish()]);
    }
    const state = new Uint32Array(S.WORDS);
    state[S.LEN] = p;
    state[S.LIMIT] = o.limit;
    state[S.NSTOP] = o.stop.length;
    state.set(o.stop, S.STOP);
    a.write(this.state.buffer, state);
    const first = [prompt[p - 1], ...(this.drafts?.firstDrafts ?? [])];
    a.write(this.ids.buffer, Uint32Array.from(first.map((t) => t ?? NO_TOKEN)));
    a.write(this.positions.buffer, Uint32Array.from({ length: this.k }, (_, j) => p - 1 + j));
    gpu.check("prefill");
  }

  /** A readback slot for {@link encodeSteps}. */
  readback(): Readback {
    const a = this.#arena;
    return {
      buffer: a.buffer(
        "readback",
        TIMESTAMP_BYTES + (S.WORDS + this.capacity) * 4,
        GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      ),
      resolve: this.#querySet
        ? a.buffer("timestamps", 16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC)
        : null,
    };
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
    enc.copyBufferToBuffer(this.state.buffer, 0, slot.buffer, TIMESTAMP_BYTES, S.WORDS * 4);
    enc.copyBufferToBuffer(
      this.tokens.buffer,
      0,
      slot.buffer,
      TIMESTAMP_BYTES + S.WORDS * 4,
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
      state: new Uint32Array(bytes, TIMESTAMP_BYTES, S.WORDS),
      tokens: new Uint32Array(bytes, TIMESTAMP_BYTES + S.WORDS * 4, this.capacity),
    };
  }

  /** Frees every buffer this session made. Call only once no submitted work uses them. */
  dispose(): void {
    this.#arena.dispose();
    this.#querySet?.destroy();
  }
}
