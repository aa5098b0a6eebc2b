/**
 * Medusa heads (Cai et al. 2024): head j + 2 is one ResBlock on the final-normed hidden state
 * u = RMSNorm(h), v_j = u + silu(W_j u + b_j), then the shared unembedding, or with
 * `headsOwnUnembedding` head j's own (`medusa_head.{j}.1.weight`, as Medusa trains them).
 * Tensors use Medusa's names, `medusa_head.{j}.0.linear.{weight,bias}`; the heads' ResBlock
 * matrices are stacked in one buffer so one launch runs them all.
 * @module
 */
import type { Tensor } from "../gpu/arena.ts";
import type { Matrix } from "../kernels/dispatch.ts";
import { argmax } from "../kernels/argmax.ts";
import { gatherRows } from "../kernels/gather_rows.ts";
import { gemv } from "../kernels/gemv.ts";
import { rmsnorm } from "../kernels/rmsnorm.ts";
import { matmulRef, rmsnormRef, silu } from "../kernels/reference.ts";
import type { ModelConfig } from "../model/config.ts";
import { get } from "../model/reference.ts";
import { allocScratch, project, type Scratch } from "../model/trunk.ts";
import type { HeadKind } from "./kind.ts";

/** Medusa's weights: W_j stacked [(nFuture - 1) dModel, dModel], biases [nFuture - 1, dModel]. */
export interface MedusaWeights {
  /** medusa_head.{j}.0.linear.weight, stacked by j. */
  w: Matrix;
  /** medusa_head.{j}.0.linear.bias, stacked by j. */
  bias: Tensor;
  /** medusa_head.{j}.1.weight [vocabSize, dModel] per head j; null when heads share lm_head. */
  unembed: Matrix[] | null;
}

const weight = (j: number) => `medusa_head.${j}.0.linear.weight`;
const bias = (j: number) => `medusa_head.${j}.0.linear.bias`;
const ownUnembed = (j: number) => `medusa_head.${j}.1.weight`;
const extra = (c: ModelConfig) => Array.from({ length: c.nFuture - 1 }, (_, j) => j);

/**
 * Medusa heads: a ResBlock per head on the final-normed hidden state, then the shared
 * unembedding or, with `headsOwnUnembedding`, each head's own.
 */
export const medusaHeads: HeadKind<MedusaWeights | null> = {
  name: "medusa",

  tensorShapes: (c) =>
    extra(c).flatMap((j) => {
      const t: [string, number[]][] = [[weight(j), [c.dModel, c.dModel]], [bias(j), [c.dModel]]];
      if (c.headsOwnUnembedding) t.push([ownUnembed(j), [c.vocabSize, c.dModel]]);
      return t;
    }),

  allocate: (alloc, c) =>
    c.nFuture < 2 ? null : {
      w: alloc.matrix("medusa_head.weight", extra(c).map((j) => [weight(j), c.dModel]), c.dModel),
      bias: alloc.vectors("medusa_head.bias", extra(c).map(bias), c.dModel),
      unembed: c.headsOwnUnembedding
        ? extra(c).map((j) => alloc.matrix(ownUnembed(j), [[ownUnembed(j), c.vocabSize]], c.dModel))
        : null,
    },

  attach(ctx, trunk, heads) {
    if (!heads) {
      return { block: () => [], logits: () => ({ program: [], heads: [] }), draft: () => [] };
    }
    const w = heads;
    const { arena, config: c, done } = ctx;
    const nh = c.nFuture - 1;
    const d = c.dModel;
    // y[r, j] = u[r] + silu(W_j u[r] + b_j) for u = s.xn: [rows, nh, dModel]
    const resBlocks = (s: Scratch, y: Tensor, rows: number) =>
      gemv(arena, {
        rows,
        y,
        x: s.xn,
        w: w.w,
        bias: w.bias,
        silu: true,
        residual: s.xn,
        residualDim: d,
        done,
        label: "medusa_head",
      });
    const norm = (s: Scratch, x: Tensor, rows: number) =>
      rmsnorm(arena, {
        rows,
        out: s.xn,
        x,
        weight: trunk.norm,
        dim: d,
        eps: c.normEps,
        done,
        label: "medusa.norm",
      });
    // logits[r, j] = v[r, j] W^T for `rows` rows of v [rows, nh, dModel] into [rows, nh, vocab]:
    // one product over all heads' rows with the shared lm_head, or one per head with its own.
    const unembed = (logits: Tensor, v: Tensor, rows: number) =>
      w.unembed
        ? w.unembed.flatMap((m, j) =>
          project(ctx, {
            y: logits,
            yRows: { offset: j * c.vocabSize, stride: nh * c.vocabSize },
            x: v,
            xRows: { offset: j * d, stride: nh * d },
            w: m,
            rows,
            label: `medusa_head.${j}.lm_head`,
          })
        )
        : project(ctx, {
          y: logits,
          x: v,
          w: trunk.lmHead,
          rows: rows * nh,
          label: "medusa.lm_head",
        });
    let sel: Scratch | null = null;
    let draftLogits: Tensor | null = null;
    return {
      block: () => [],

      logits({ s }) {
        const rows = s.rows;
        const v = arena.tensor("medusa.out", [rows * nh, d]);
        const logits = arena.tensor("medusa.logits", [rows * nh, c.vocabSize]);
        return {
          program: [
            // u = RMSNorm(h) g_final
            ...norm(s, s.h, rows),
            ...resBlocks(s, v, rows),
            // logits[r, j] = v[r, j] W_unembed^T
            ...unembed(logits, v, rows),
          ],
          heads: extra(c).map((j) => ({
            tensor: logits,
            offset: j * c.vocabSize,
            rowStride: nh * c.vocabSize,
          })),
        };
      },

      draft({ s, row, ids }) {
        sel ??= allocScratch(arena, c, nh, ctx.capacity);
        draftLogits ??= arena.tensor("medusa.draft_logits", [nh, c.vocabSize]);
        return [
          // x = h[row]; u = RMSNorm(x) g_final
          ...gatherRows(arena, {
            x: s.h,
            out: sel.h,
            index: row,
            rows: s.rows,
            dim: d,
            outRow: 0,
            done,
            label: "medusa.select",
          }),
          ...norm(sel, sel.h, 1),
          // v_j = u + silu(W_j u + b_j): [nh, dModel]
          ...resBlocks(sel, sel.mid, 1),
          // logits_j = v_j W_unembed^T; d_j = argmax -> ids[1 + j]
          ...unembed(draftLogits, sel.mid, 1),
          ...argmax(arena, {
            logits: draftLogits,
            out: ids,
            outOffset: 1,
            rows: nh,
            n: c.vocabSize,
            done,
            label: "medusa.argmax",
          }),
        ];
      },
    };
  },

  reference(c, t, { h }) {
    const d = c.dModel;
    const u = rmsnormRef(h, get(t, "model.norm.weight"), d, c.normEps);
    const shared = get(t, c.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    return extra(c).map((j) => {
      const lin = matmulRef(u, get(t, weight(j)), d);
      const b = get(t, bias(j));
      for (let i = 0; i < lin.length; i++) lin[i] = u[i] + silu(lin[i] + b[i % d]);
      return matmulRef(lin, c.headsOwnUnembedding ? get(t, ownUnembed(j)) : shared, d);
    });
  },
};
