/**
 * What a kind of heads 2..nFuture is: its tensors, how they are allocated, the launches it adds
 * to a block, the launches that draft the next block from one row, and its CPU reference. A new
 * kind is one file implementing {@link HeadKind} plus one line in registry.ts.
 *
 * The interface is shaped for the three kinds in use: independent heads over the trunk's last
 * hidden state (Meta's transformer heads, Medusa), and sequential MTP modules (DeepSeek-V3,
 * MiMo, GLM) whose draft for position t+k also reads the embedding of token t+k-1: `draft` gets
 * the block's token ids and writes each draft there before the next module runs, all on the GPU.
 * @module
 */
import type { Tensor } from "../gpu/arena.ts";
import type { Dispatch } from "../kernels/dispatch.ts";
import type { GpuIndex } from "../kernels/gather_rows.ts";
import type { ModelConfig } from "../model/config.ts";
import type { Tensors } from "../model/reference.ts";
import type { ForwardContext, Scratch } from "../model/trunk.ts";
import type { TrunkWeights, WeightAllocator } from "../model/weights.ts";

/** A block of rows the trunk just ran: its activations (s.h holds the trunk's output), ids, positions. */
export interface Block {
  /** The block's activations; `s.h` is the trunk's hidden state before the final norm. */
  s: Scratch;
  /** [rows] u32: the block's input token ids. */
  ids: Tensor;
  /** [rows] u32: each row's position. */
  positions: Tensor;
  /**
   * The sequence by position, when the token after every row is already in it (prefill chunks,
   * full forwards): heads whose state depends on the next token (sequential MTP modules) fill
   * it from here. Absent for decode blocks, whose next tokens the verifier writes.
   */
  next?: Tensor;
}

/** Where head j's logits of row r are: `tensor[offset + r * rowStride ..][0 .. vocab)`. */
export interface LogitsView {
  /** The tensor holding them. */
  tensor: Tensor;
  /** Element offset of row 0. */
  offset: number;
  /** Elements between rows. */
  rowStride: number;
  /** Rows it has, when fewer than the block's (sequential module k: rows - k). */
  rows?: number;
}

/** A kind's launches for one program (a generation, a forward), with its per-run buffers. */
export interface HeadRun {
  /**
   * Launches over a block after the trunk: heads that keep per-position state (their own KV
   * caches) fill it here. Runs for prefill chunks and every decode block, before the verifier
   * moves on.
   */
  block(b: Block): Dispatch[];
  /**
   * Logits of heads 2..nFuture for every row of a block that `block` already ran on (full
   * forwards and tests): one view per head.
   */
  logits(b: Block): { program: Dispatch[]; heads: LogitsView[] };
  /**
   * Drafts for the next block, after the verifier: from one row of this block (its index read on
   * the GPU, the row the verifier accepted last), writes draft j to `ids[j]` for 1 <= j < k (the
   * block size given to `attach`). `ids[0]` and `positions` already hold the next block's first
   * token and positions; `tokens` holds the sequence, the accepted tokens included.
   */
  draft(
    o: { s: Scratch; row: GpuIndex; ids: Tensor; positions: Tensor; tokens: Tensor },
  ): Dispatch[];
}

/** One kind of heads 2..nFuture. */
export interface HeadKind<W = unknown> {
  /** Its name in `config.headKind`. */
  readonly name: string;
  /** Checkpoint tensors of heads 2..nFuture, with shapes. */
  tensorShapes(c: ModelConfig): [string, number[]][];
  /** Allocates those tensors through the model's allocator (so they load by name). */
  allocate(alloc: WeightAllocator, c: ModelConfig): W;
  /**
   * Builds the per-run buffers (in `ctx.arena`) and returns the launches; `k` is the rows of a
   * verify block (1 + drafts per step; default nFuture).
   */
  attach(ctx: ForwardContext, trunk: TrunkWeights, w: W, k?: number): HeadRun;
  /**
   * CPU reference (f64): the logits of heads 2..nFuture at every position of `tokens` (fewer
   * where a head has fewer rows), given `h`, the trunk's hidden states there.
   */
  reference(
    c: ModelConfig,
    t: Tensors,
    o: { h: Float64Array; tokens: readonly number[] },
  ): Float64Array[];
}
