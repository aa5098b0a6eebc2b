/**
 * Heads 2..nFuture on the shared final norm and unembedding. Head 1 is the trunk's own
 * next-token head (model/trunk.ts `unembed`).
 * - "transformer" (Meta MTP): head j is one Llama layer over the trunk's hidden states, with its
 *   own KV cache, then the shared final norm and unembedding.
 * - "medusa": head j is u + silu(W_j u + b_j) on u = the final-normed hidden state, then the
 *   shared unembedding.
 * @module
 */
import type { Dispatch } from "../kernels/dispatch.ts";
import { gemv } from "../kernels/gemv.ts";
import { rmsnorm } from "../kernels/rmsnorm.ts";
import { selectRow } from "../kernels/elementwise.ts";
import { argmax } from "../kernels/decode_ops.ts";
import {
  type ForwardContext,
  type KvCache,
  layer,
  project,
  type Scratch,
  unembed,
} from "../model/trunk.ts";
import type { Weights } from "../model/weights.ts";

/**
 * Transformer heads over the whole block, before the verifier moves the position:
 * z[j] = layer_j(h). This also fills the heads' KV caches. No-op for Medusa heads.
 */
export function headLayers(
  ctx: ForwardContext,
  w: Weights,
  o: { z: GPUBuffer[]; h: GPUBuffer; kv: KvCache[]; s: Scratch },
): Dispatch[] {
  return w.headLayers.flatMap((lw, j) =>
    layer(ctx, lw, { output: o.z[j], input: o.h, kv: o.kv[j], s: o.s, label: `mtp_heads.${j}` })
  );
}

/**
 * Medusa logits for every row of a block (full forwards and tests): logits
 * [rows, nFuture-1, vocab]. Transformer heads need no helper: their logits are `unembed(z_j)`.
 */
export function medusaLogitsAllRows(
  ctx: ForwardContext,
  w: Weights,
  o: { logits: GPUBuffer; h: GPUBuffer; s: Scratch; stacked: GPUBuffer },
): Dispatch[] {
  const { gpu, state, config: c } = ctx;
  const rows = o.s.rows;
  if (!w.medusa) throw new RangeError("the model has no Medusa heads");
  return [
    // u = RMSNorm(h) g_final
    rmsnorm(gpu, {
      state,
      rows,
      out: o.s.xn,
      x: o.h,
      weight: w.norm,
      dim: c.dModel,
      eps: c.normEps,
      label: "medusa.norm",
    }),
    // stacked[r, j] = u[r] + silu(W_j u[r] + b_j): [rows, nFuture-1, dModel]
    gemv(gpu, {
      state,
      rows,
      y: o.stacked,
      x: o.s.xn,
      w: w.medusa.w,
      bias: w.medusa.bias,
      silu: true,
      residual: o.s.xn,
      residualDim: c.dModel,
      label: "medusa_head",
    }),
    // logits[r, j] = stacked[r, j] W_unembed^T
    project(ctx, {
      y: o.logits,
      x: o.stacked,
      w: w.lmHead,
      rows: rows * (c.nFuture - 1),
      label: "medusa.lm_head",
    }),
  ];
}

/**
 * After the verifier: drafts for the next block from the row it chose (state.headRow), written
 * to ids[1 .. nFuture). `sel` is a scratch of nFuture-1 rows; `logits` holds nFuture-1 rows.
 */
export function headDrafts(
  ctx: ForwardContext,
  w: Weights,
  o: {
    ids: GPUBuffer;
    h: GPUBuffer;
    z: GPUBuffer[];
    sel: Scratch;
    logits: GPUBuffer;
  },
): Dispatch[] {
  const { gpu, state, config: c } = ctx;
  const nh = c.nFuture - 1;
  const d = c.dModel;
  const out: Dispatch[] = [];
  if (w.medusa) {
    out.push(
      // x = h[headRow]
      selectRow(gpu, { state, out: o.sel.h, x: o.h, dim: d, outRow: 0, label: "medusa.select" }),
      // u = RMSNorm(x) g_final
      rmsnorm(gpu, {
        state,
        rows: 1,
        out: o.sel.xn,
        x: o.sel.h,
        weight: w.norm,
        dim: d,
        eps: c.normEps,
        label: "medusa.norm",
      }),
      // v_j = u + silu(W_j u + b_j), j < nFuture-1: [nFuture-1, dModel]
      gemv(gpu, {
        state,
        rows: 1,
        y: o.sel.mid,
        x: o.sel.xn,
        w: w.medusa.w,
        bias: w.medusa.bias,
        silu: true,
        residual: o.sel.xn,
        residualDim: d,
        label: "medusa_head",
      }),
      // logits_j = v_j W_unembed^T
      project(ctx, { y: o.logits, x: o.sel.mid, w: w.lmHead, rows: nh, label: "medusa.lm_head" }),
    );
  } else {
    // x_j = z_j[headRow]; logits_j = RMSNorm(x_j) W_unembed^T
    o.z.forEach((z, j) =>
      out.push(
        selectRow(gpu, {
          state,
          out: o.sel.h,
          x: z,
          dim: d,
          outRow: j,
          label: `mtp_heads.${j}.select`,
        }),
      )
    );
    out.push(...unembed(ctx, w, { logits: o.logits, x: o.sel.h, s: o.sel, label: "mtp_heads" }));
  }
  // d_j = argmax(logits_j) -> ids[j + 1]
  out.push(argmax(gpu, {
    state,
    out: o.ids,
    outOffset: 1,
    logits: o.logits,
    rows: nh,
    n: c.vocabSize,
    label: "heads.argmax",
  }));
  return out;
}
