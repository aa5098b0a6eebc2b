/**
 * The trunk's forward pass as flat lists of kernel launches: a Llama pre-norm layer
 * (RMSNorm, RoPE, grouped-query attention, SwiGLU) over a block of rows at positions
 * state.pos .. state.pos + rows - 1, each launch written output first, then inputs and weights.
 * Blocks of up to 8 rows (decode, verify) use the fused matrix-vector kernel; longer blocks
 * (prefill, full forwards) the tiled matrix product.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { Dispatch, Matrix } from "../kernels/dispatch.ts";
import { embed } from "../kernels/embed.ts";
import { rmsnorm } from "../kernels/rmsnorm.ts";
import { gemv, GEMV_MAX_ROWS } from "../kernels/gemv.ts";
import { matmul } from "../kernels/matmul.ts";
import { ropeKv } from "../kernels/rope_kv.ts";
import { attention, attentionSplits } from "../kernels/attention.ts";
import { add, swiglu } from "../kernels/elementwise.ts";
import type { ModelConfig } from "./config.ts";
import type { LayerWeights, Weights } from "./weights.ts";

/**
 * What every launch of one forward needs besides its own buffers.
 *
 * @example
 * ```ts
 * import type { ForwardContext } from "@ahead/mtp";
 * const positions = (ctx: ForwardContext) => ctx.capacity;
 * ```
 */
export interface ForwardContext {
  /** Device and buffer registry. */
  gpu: Gpu;
  /** The model's configuration. */
  config: ModelConfig;
  /** The decode state (position, done flag, ...), see decode/state.ts. */
  state: GPUBuffer;
  /** RoPE cos/sin table: [capacity, headDim/2, 2]. */
  rope: GPUBuffer;
  /** Positions each KV cache holds. */
  capacity: number;
}

/**
 * Activations of a block of `rows` rows.
 *
 * @example
 * ```ts
 * import type { Scratch } from "@ahead/mtp";
 * const residual = (s: Scratch) => s.h;
 * ```
 */
export interface Scratch {
  /** Rows of the block. */
  rows: number;
  /** [rows, dModel] the residual stream */
  h: GPUBuffer;
  /** [rows, dModel] the residual stream between attention and feed-forward */
  mid: GPUBuffer;
  /** [rows, dModel] normed input of a sub-block */
  xn: GPUBuffer;
  /** [rows, (nHeads + 2 nKvHeads) headDim] fused q, k, v */
  qkv: GPUBuffer;
  /** [rows, nHeads headDim] attention output */
  attn: GPUBuffer;
  /** [rows, dFF] SwiGLU output */
  ff: GPUBuffer;
  /** [rows, 2 dFF] gate and up projections (tiled path only) */
  gu: GPUBuffer;
  /** [rows, dModel] projection before its residual add (tiled path only) */
  tmp: GPUBuffer;
  /** [rows, nHeads, splits, 2 + headDim] per-chunk attention partials (1 split for long blocks) */
  partial: GPUBuffer;
}

/** Allocates the activations of a block of `rows` rows attending over `capacity` positions. */
export function allocScratch(gpu: Gpu, c: ModelConfig, rows: number, capacity: number): Scratch {
  const f = (name: string, n: number) => gpu.storage(`${name}[${rows}]`, rows * n * 4);
  const tiled = rows > GEMV_MAX_ROWS;
  return {
    rows,
    h: f("h", c.dModel),
    mid: f("mid", c.dModel),
    xn: f("xn", c.dModel),
    qkv: f("qkv", (c.nHeads + 2 * c.nKvHeads) * c.headDim),
    attn: f("attn", c.nHeads * c.headDim),
    ff: f("ff", c.dFF),
    gu: f("gu", tiled ? 2 * c.dFF : 1),
    tmp: f("tmp", tiled ? c.dModel : 1),
    partial: f("partial", c.nHeads * (tiled ? 1 : attentionSplits(capacity)) * (2 + c.headDim)),
  };
}

/**
 * The KV cache of one layer.
 *
 * @example
 * ```ts
 * import type { KvCache } from "@ahead/mtp";
 * const free = (kv: KvCache) => { kv.k.destroy(); kv.v.destroy(); };
 * ```
 */
export interface KvCache {
  /** [capacity, nKvHeads, headDim] */
  k: GPUBuffer;
  /** [capacity, nKvHeads, headDim] */
  v: GPUBuffer;
}

/** Allocates `n` layers of KV cache for `capacity` positions. */
export function allocKv(gpu: Gpu, c: ModelConfig, capacity: number, n: number): KvCache[] {
  const bytes = capacity * c.nKvHeads * c.headDim * 4;
  return Array.from({ length: n }, (_, l) => ({
    k: gpu.storage(`k cache ${l}`, bytes),
    v: gpu.storage(`v cache ${l}`, bytes),
  }));
}

/** y = x W^T for `rows` rows, with the kernel that suits the block size. */
export function project(
  ctx: ForwardContext,
  o: { y: GPUBuffer; x: GPUBuffer; w: Matrix; rows: number; label: string },
): Dispatch {
  const { gpu, state } = ctx;
  const f = o.rows <= GEMV_MAX_ROWS ? gemv : matmul;
  return f(gpu, { state, rows: o.rows, y: o.y, x: o.x, w: o.w, label: o.label });
}

/** y = x W^T (+ residual), with the kernel that suits the block size. */
function linear(
  ctx: ForwardContext,
  s: Scratch,
  o: { y: GPUBuffer; x: GPUBuffer; w: Matrix; residual?: GPUBuffer; label: string },
): Dispatch[] {
  const { gpu, state } = ctx;
  const rows = s.rows;
  if (!o.residual) return [project(ctx, { ...o, rows })];
  if (rows <= GEMV_MAX_ROWS) {
    return [
      gemv(gpu, { state, rows, y: o.y, x: o.x, w: o.w, residual: o.residual, label: o.label }),
    ];
  }
  return [
    matmul(gpu, { state, rows, y: s.tmp, x: o.x, w: o.w, label: o.label }),
    add(gpu, { state, out: o.y, a: o.residual, b: s.tmp, n: rows * o.w.rows, label: o.label }),
  ];
}

/**
 * y = RMSNorm(x) g W^T, or with `gated` y = silu(xn Wgate^T) * (xn Wup^T) (SwiGLU). Short blocks
 * fuse the norm into the matrix-vector kernel; long blocks normalise into s.xn first.
 */
function normLinear(
  ctx: ForwardContext,
  s: Scratch,
  o: { y: GPUBuffer; x: GPUBuffer; norm: GPUBuffer; w: Matrix; gated?: boolean; label: string },
): Dispatch[] {
  const { gpu, state, config: c } = ctx;
  const rows = s.rows;
  if (rows <= GEMV_MAX_ROWS) {
    return [gemv(gpu, {
      state,
      rows,
      y: o.y,
      x: o.x,
      w: o.w,
      gated: o.gated,
      norm: { weight: o.norm, eps: c.normEps },
      label: o.label,
    })];
  }
  const norm = rmsnorm(gpu, {
    state,
    rows,
    out: s.xn,
    x: o.x,
    weight: o.norm,
    dim: c.dModel,
    eps: c.normEps,
    label: `${o.label}.norm`,
  });
  if (!o.gated) {
    return [norm, matmul(gpu, { state, rows, y: o.y, x: s.xn, w: o.w, label: o.label })];
  }
  return [
    norm,
    matmul(gpu, { state, rows, y: s.gu, x: s.xn, w: o.w, label: o.label }),
    swiglu(gpu, { state, rows, out: o.y, gu: s.gu, n: o.w.rows / 2, label: o.label }),
  ];
}

/**
 * One pre-norm Llama layer over the block: output = layer(input).
 * `output` may be `input` (the trunk updates its residual stream in place).
 */
export function layer(
  ctx: ForwardContext,
  w: LayerWeights,
  o: { output: GPUBuffer; input: GPUBuffer; kv: KvCache; s: Scratch; label: string },
): Dispatch[] {
  const { gpu, state, config: c } = ctx;
  const { s, kv, label } = o;
  const rows = s.rows;
  const shape = {
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: c.headDim,
    capacity: ctx.capacity,
  };
  const attn = {
    state,
    rows,
    ...shape,
    out: s.attn,
    qkv: s.qkv,
    kCache: kv.k,
    vCache: kv.v,
    label: `${label}.attention`,
  };
  return [
    // [q k v] = (RMSNorm(x) g_attn) [Wq Wk Wv]^T
    ...normLinear(ctx, s, {
      y: s.qkv,
      x: o.input,
      norm: w.inputNorm,
      w: w.qkv,
      label: `${label}.qkv_proj`,
    }),
    // q, k = RoPE(q, k, pos); cache[pos] = k, v
    ropeKv(gpu, {
      state,
      rows,
      ...shape,
      qkv: s.qkv,
      kCache: kv.k,
      vCache: kv.v,
      rope: ctx.rope,
      label: `${label}.rope_kv`,
    }),
    // attn = softmax(q K^T / sqrt(hd)) V, causal, grouped-query
    // (split over chunks of positions for short blocks, one chunk per row for long ones)
    ...attention(gpu, {
      ...attn,
      partial: s.partial,
      splits: rows <= GEMV_MAX_ROWS ? attentionSplits(ctx.capacity) : 1,
    }),
    // mid = x + attn Wo^T
    ...linear(ctx, s, {
      y: s.mid,
      x: s.attn,
      w: w.o,
      residual: o.input,
      label: `${label}.o_proj`,
    }),
    // ff = silu(xn Wgate^T) * (xn Wup^T), xn = RMSNorm(mid) g_mlp
    ...normLinear(ctx, s, {
      y: s.ff,
      x: s.mid,
      norm: w.postNorm,
      w: w.gateUp,
      gated: true,
      label: `${label}.gate_up_proj`,
    }),
    // out = mid + ff Wdown^T
    ...linear(ctx, s, {
      y: o.output,
      x: s.ff,
      w: w.down,
      residual: s.mid,
      label: `${label}.down_proj`,
    }),
  ];
}

/** s.h = trunk(embed(ids[idsOffset ..])): the hidden states before the final norm. */
export function trunk(
  ctx: ForwardContext,
  w: Weights,
  o: { ids: GPUBuffer; idsOffset?: number; kv: KvCache[]; s: Scratch },
): Dispatch[] {
  const { gpu, state } = ctx;
  const s = o.s;
  const out: Dispatch[] = [
    // h = E[ids]
    embed(gpu, {
      state,
      rows: s.rows,
      out: s.h,
      ids: o.ids,
      idsOffset: o.idsOffset,
      table: w.embed,
      label: "embed_tokens",
    }),
  ];
  w.layers.forEach((lw, l) => {
    out.push(...layer(ctx, lw, { output: s.h, input: s.h, kv: o.kv[l], s, label: `layers.${l}` }));
  });
  return out;
}

/** logits = RMSNorm(x) W_unembed^T for `rows` rows of x: the shared final norm and unembedding. */
export function unembed(
  ctx: ForwardContext,
  w: Weights,
  o: { logits: GPUBuffer; x: GPUBuffer; s: Scratch; label: string },
): Dispatch[] {
  return normLinear(ctx, o.s, {
    y: o.logits,
    x: o.x,
    norm: w.norm,
    w: w.lmHead,
    label: `${o.label}.lm_head`,
  });
}
