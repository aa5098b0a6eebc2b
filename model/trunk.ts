/**
 * The trunk's forward pass as flat lists of kernel launches: a Llama pre-norm layer (RMSNorm,
 * RoPE, grouped-query attention, SwiGLU; optional q/k/v and o biases and per-head q/k norms for
 * the Qwen and Llama variants) over a block of rows, each row at its own position
 * (a u32 tensor), each launch written output first, then inputs and weights. Blocks of up to 8
 * rows (decode, verify) use the fused matrix-vector kernel; longer blocks (prefill, full
 * forwards) the tiled matrix product.
 * @module
 */
import type { Arena, Tensor } from "../gpu/arena.ts";
import { ShapeError } from "../gpu/errors.ts";
import { type Dispatch, isQuantized, type Matrix } from "../kernels/dispatch.ts";
import { dequantize } from "../kernels/quantize.ts";
import { embed } from "../kernels/embed.ts";
import { rmsnorm } from "../kernels/rmsnorm.ts";
import { gemv, GEMV_MAX_ROWS } from "../kernels/gemv.ts";
import { matmul } from "../kernels/matmul.ts";
import { qkNorm } from "../kernels/qk_norm.ts";
import { ropeKv } from "../kernels/rope_kv.ts";
import { attention, blockSplits } from "../kernels/attention.ts";
import { add } from "../kernels/add.ts";
import { swiglu } from "../kernels/swiglu.ts";
import type { ModelConfig } from "./config.ts";
import type { LayerWeights, TrunkWeights } from "./weights.ts";

/** What every launch of one program needs besides its own buffers. */
export interface ForwardContext {
  /** Owns the launches' parameter buffers (and whatever the program allocates). */
  arena: Arena;
  /** The model's configuration. */
  config: ModelConfig;
  /** RoPE cos/sin table: [capacity, headDim/2, 2]. */
  rope: Tensor;
  /** Positions each KV cache holds. */
  capacity: number;
  /** Word 0 nonzero makes every launch exit at once (the decode loop's stop flag); optional. */
  done?: GPUBuffer;
}

/** Activations of a block of `rows` rows. */
export interface Scratch {
  /** Rows of the block. */
  rows: number;
  /** [rows, dModel] the residual stream */
  h: Tensor;
  /** [rows, dModel] the residual stream between attention and feed-forward */
  mid: Tensor;
  /** [rows, dModel] normed input of a sub-block */
  xn: Tensor;
  /** [rows, (nHeads + 2 nKvHeads) headDim] fused q, k, v */
  qkv: Tensor;
  /** [rows, nHeads headDim] attention output */
  attn: Tensor;
  /** [rows, dFF] SwiGLU output */
  ff: Tensor;
  /** [rows, 2 dFF] gate and up projections (tiled path only) */
  gu: Tensor;
  /** [rows, dModel] projection before its residual add (tiled path only) */
  tmp: Tensor;
  /** [rows, nHeads, splits, 2 + headDim] per-chunk attention partials (splits: blockSplits()) */
  partial: Tensor;
  /** [rows, nHeads] u32 arrival counters of attention's chunks (zero between launches) */
  arrived: Tensor;
}

/** Allocates the activations of a block of `rows` rows attending over `capacity` positions. */
export function allocScratch(a: Arena, c: ModelConfig, rows: number, capacity: number): Scratch {
  const f = (name: string, n: number) => a.tensor(`${name}[${rows}]`, [rows, n]);
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
    partial: f("partial", c.nHeads * blockSplits(rows, { ...c, capacity }) * (2 + c.headDim)),
    arrived: a.tensor(`arrived[${rows}]`, [rows, c.nHeads], "u32"),
  };
}

/** The KV cache of one layer. */
export interface KvCache {
  /** [capacity, nKvHeads, headDim]: f32, or f16 pairs in u32 words ([.., headDim / 2]) */
  k: Tensor;
  /** [capacity, nKvHeads, headDim]: f32, or f16 pairs in u32 words ([.., headDim / 2]) */
  v: Tensor;
  /** What k and v hold (the config's kvDtype). */
  dtype: "f32" | "f16";
}

/** Allocates `n` layers of KV cache for `capacity` positions, stored as the config's kvDtype. */
export function allocKv(a: Arena, c: ModelConfig, capacity: number, n: number): KvCache[] {
  const f16 = c.kvDtype === "f16";
  const shape = [capacity, c.nKvHeads, f16 ? c.headDim / 2 : c.headDim];
  const dtype = f16 ? "u32" : "f32";
  return Array.from({ length: n }, (_, l) => ({
    k: a.tensor(`k cache ${l}`, shape, dtype),
    v: a.tensor(`v cache ${l}`, shape, dtype),
    dtype: c.kvDtype,
  }));
}

const dequantScratch = new WeakMap<ForwardContext, Tensor>();

/**
 * f16 words of the largest quantized matrix a model of config `c` has (a part of one is never
 * larger), capped by the device's binding limit: the scratch a tiled product dequantizes into.
 */
function largestQuantizedWords(ctx: ForwardContext): number {
  const c = ctx.config;
  const d = c.dModel;
  const elems = [
    (c.nHeads + 2 * c.nKvHeads) * c.headDim * d,
    d * c.nHeads * c.headDim,
    2 * c.dFF * d,
    (c.nFuture - 1) * d * d,
    !c.tieEmbeddings || c.headsOwnUnembedding ? c.vocabSize * d : 0,
  ];
  const limit = ctx.arena.gpu.device.limits.maxStorageBufferBindingSize;
  return Math.min(Math.max(...elems) / 2, Math.floor(limit / 4));
}

/**
 * The tiled matrix product for blocks longer than the gemv takes, for any storage type: each
 * part of a q8 or q4 matrix is first dequantized to f16 in a scratch buffer (one per context,
 * sized for the largest matrix), then multiplied like an f16 matrix. Prefill thus rounds q d to
 * f16; decode's gemv uses q d exactly.
 */
export function tiledProduct(ctx: ForwardContext, o: Parameters<typeof matmul>[1]): Dispatch[] {
  const w = o.w;
  if (!isQuantized(w.dtype)) return matmul(ctx.arena, o);
  let scratch = dequantScratch.get(ctx);
  if (!scratch) {
    scratch = ctx.arena.tensor("dequantized weights", [largestQuantizedWords(ctx)]);
    dequantScratch.set(ctx, scratch);
  }
  const buffer = scratch.buffer;
  return w.parts.flatMap((p) => [
    ...dequantize(ctx.arena, {
      w,
      part: p,
      out: scratch,
      done: o.done,
      label: `${o.label}.dequantize`,
    }),
    ...matmul(ctx.arena, {
      ...o,
      w: { ...w, dtype: "f16", parts: [{ buffer, start: p.start, outputs: p.outputs }] },
    }),
  ]);
}

/**
 * y = x W^T for `rows` rows, with the kernel that suits the block size; `xRows` and `yRows`
 * place the rows inside wider tensors (row r at `offset + r * stride`).
 */
export function project(
  ctx: ForwardContext,
  o: {
    y: Tensor;
    x: Tensor;
    w: Matrix;
    rows: number;
    xRows?: { offset: number; stride: number };
    yRows?: { offset: number; stride: number };
    label: string;
  },
): Dispatch[] {
  if (o.rows <= GEMV_MAX_ROWS) return gemv(ctx.arena, { ...o, done: ctx.done });
  return tiledProduct(ctx, { ...o, done: ctx.done });
}

/** y = x W^T (+ bias) + residual, with the kernel that suits the block size. */
function linearResidual(
  ctx: ForwardContext,
  s: Scratch,
  o: { y: Tensor; x: Tensor; w: Matrix; bias: Tensor | null; residual: Tensor; label: string },
): Dispatch[] {
  const { arena, done } = ctx;
  const rows = s.rows;
  const bias = o.bias ?? undefined;
  if (rows <= GEMV_MAX_ROWS) return gemv(arena, { ...o, bias, rows, done });
  return [
    ...tiledProduct(ctx, { rows, y: s.tmp, x: o.x, w: o.w, bias, done, label: o.label }),
    ...add(arena, {
      out: o.y,
      a: o.residual,
      b: s.tmp,
      n: rows * o.w.outputs,
      done,
      label: o.label,
    }),
  ];
}

/**
 * y = RMSNorm(x) g W^T (+ bias), or for a gated W, y = silu(xn Wgate^T) * (xn Wup^T) (SwiGLU,
 * no bias). Short blocks fuse the norm into the matrix-vector kernel; long blocks normalise
 * into s.xn first.
 */
export function normLinear(
  ctx: ForwardContext,
  s: Scratch,
  o: { y: Tensor; x: Tensor; norm: Tensor; w: Matrix; bias?: Tensor | null; label: string },
): Dispatch[] {
  const { arena, done, config: c } = ctx;
  const rows = s.rows;
  const bias = o.bias ?? undefined;
  if (bias && o.w.gated) {
    throw new ShapeError(`${o.label}: normLinear takes no bias for a gated matrix`);
  }
  if (rows <= GEMV_MAX_ROWS) {
    return gemv(arena, {
      rows,
      y: o.y,
      x: o.x,
      w: o.w,
      bias,
      norm: { weight: o.norm, eps: c.normEps },
      done,
      label: o.label,
    });
  }
  const dim = o.w.cols;
  const norm = rmsnorm(arena, {
    rows,
    out: s.xn,
    x: o.x,
    weight: o.norm,
    dim,
    eps: c.normEps,
    done,
    label: `${o.label}.norm`,
  });
  if (!o.w.gated) {
    return [
      ...norm,
      ...tiledProduct(ctx, { rows, y: o.y, x: s.xn, w: o.w, bias, done, label: o.label }),
    ];
  }
  return [
    ...norm,
    ...tiledProduct(ctx, { rows, y: s.gu, x: s.xn, w: o.w, done, label: o.label }),
    ...swiglu(arena, { rows, out: o.y, gu: s.gu, n: o.w.outputs, done, label: o.label }),
  ];
}

/**
 * One pre-norm Llama layer over the block: output = layer(input), rows at `positions`.
 * `output` may be `input` (the trunk updates its residual stream in place).
 */
export function layer(
  ctx: ForwardContext,
  w: LayerWeights,
  o: { output: Tensor; input: Tensor; positions: Tensor; kv: KvCache; s: Scratch; label: string },
): Dispatch[] {
  const { arena, done, config: c } = ctx;
  const { s, kv, label, positions } = o;
  const rows = s.rows;
  const shape = {
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: c.headDim,
    capacity: ctx.capacity,
  };
  const cache = { kCache: kv.k, vCache: kv.v, kvDtype: kv.dtype };
  // Blocks of up to 8 rows rotate q and k and fill the cache in the qkv product's epilogue, unless
  // the q/k norms (Qwen3) come between them.
  const fused = rows <= GEMV_MAX_ROWS && !w.qkNorm &&
    w.qkv.parts.every((p) => p.start % c.headDim === 0 && p.outputs % c.headDim === 0);
  return [
    // [q k v] = (RMSNorm(x) g_attn) [Wq Wk Wv]^T (+ [bq bk bv])
    // (fused: q, k = RoPE(q, k, pos); cache[pos] = k, v, as below)
    ...(fused
      ? gemv(arena, {
        rows,
        y: s.qkv,
        x: o.input,
        w: w.qkv,
        bias: w.qkvBias ?? undefined,
        norm: { weight: w.inputNorm, eps: c.normEps },
        rope: { ...shape, ...cache, positions, table: ctx.rope },
        done,
        label: `${label}.qkv_proj`,
      })
      : normLinear(ctx, s, {
        y: s.qkv,
        x: o.input,
        norm: w.inputNorm,
        w: w.qkv,
        bias: w.qkvBias,
        label: `${label}.qkv_proj`,
      })),
    // q, k = RMSNorm(q) g_q, RMSNorm(k) g_k over each head (Qwen3), before RoPE
    ...(w.qkNorm
      ? qkNorm(arena, {
        ...shape,
        rows,
        qkv: s.qkv,
        weight: w.qkNorm,
        eps: c.normEps,
        done,
        label: `${label}.qk_norm`,
      })
      : []),
    // q, k = RoPE(q, k, pos); cache[pos] = k, v
    ...(fused ? [] : ropeKv(arena, {
      ...shape,
      ...cache,
      rows,
      positions,
      qkv: s.qkv,
      rope: ctx.rope,
      done,
      label: `${label}.rope_kv`,
    })),
    // attn = softmax(q K^T / sqrt(hd)) V over positions 0..pos, grouped-query
    // (split over chunks of positions; the last chunk of a row to finish merges them)
    ...attention(arena, {
      ...shape,
      rows,
      positions,
      out: s.attn,
      qkv: s.qkv,
      ...cache,
      partial: s.partial,
      arrived: s.arrived,
      done,
      label: `${label}.attention`,
    }),
    // mid = x + attn Wo^T (+ bo)
    ...linearResidual(ctx, s, {
      y: s.mid,
      x: s.attn,
      w: w.o,
      bias: w.oBias,
      residual: o.input,
      label: `${label}.o_proj`,
    }),
    // ff = silu(xn Wgate^T) * (xn Wup^T), xn = RMSNorm(mid) g_mlp
    ...normLinear(ctx, s, {
      y: s.ff,
      x: s.mid,
      norm: w.postNorm,
      w: w.gateUp,
      label: `${label}.gate_up_proj`,
    }),
    // out = mid + ff Wdown^T
    ...linearResidual(ctx, s, {
      y: o.output,
      x: s.ff,
      w: w.down,
      bias: null,
      residual: s.mid,
      label: `${label}.down_proj`,
    }),
  ];
}

/** s.h = trunk(embed(ids[idsOffset ..])): the hidden states before the final norm. */
export function trunk(
  ctx: ForwardContext,
  w: TrunkWeights,
  o: { ids: Tensor; idsOffset?: number; positions: Tensor; kv: KvCache[]; s: Scratch },
): Dispatch[] {
  const s = o.s;
  return [
    // h = E[ids]
    ...embed(ctx.arena, {
      rows: s.rows,
      out: s.h,
      ids: o.ids,
      idsOffset: o.idsOffset,
      table: w.embed,
      done: ctx.done,
      label: "embed_tokens",
    }),
    ...w.layers.flatMap((lw, l) =>
      layer(ctx, lw, {
        output: s.h,
        input: s.h,
        positions: o.positions,
        kv: o.kv[l],
        s,
        label: `layers.${l}`,
      })
    ),
  ];
}

/** logits = RMSNorm(x) W_unembed^T for `rows` rows of x: the shared final norm and unembedding. */
export function unembed(
  ctx: ForwardContext,
  w: TrunkWeights,
  o: { logits: Tensor; x: Tensor; s: Scratch; label: string },
): Dispatch[] {
  return normLinear(ctx, o.s, {
    y: o.logits,
    x: o.x,
    norm: w.norm,
    w: w.lmHead,
    label: `${o.label}.lm_head`,
  });
}
