/**
 * Meta's multi-token prediction heads (Gloeckle et al. 2024): head j + 2 is one Llama layer
 * over the trunk's last hidden state, with its own KV cache, followed by the shared final norm
 * and unembedding. Tensors: `mtp_heads.{j}.*` with the names of a trunk layer.
 * @module
 */
import type { Tensor } from "../gpu/arena.ts";
import type { Dispatch } from "../kernels/dispatch.ts";
import { argmax } from "../kernels/argmax.ts";
import { gatherRows } from "../kernels/gather_rows.ts";
import type { ModelConfig } from "../model/config.ts";
import { layerRef, unembedRef } from "../model/reference.ts";
import { allocKv, allocScratch, layer, type Scratch, unembed } from "../model/trunk.ts";
import { layerTensorShapes, type LayerWeights } from "../model/weights.ts";
import type { HeadKind } from "./kind.ts";

const prefix = (j: number) => `mtp_heads.${j}`;
const extra = (c: ModelConfig) => Array.from({ length: c.nFuture - 1 }, (_, j) => j);

/** Transformer heads: one Llama layer per head on the shared norm and unembedding. */
export const transformerHeads: HeadKind<LayerWeights[]> = {
  name: "transformer",

  tensorShapes: (c) => extra(c).flatMap((j) => layerTensorShapes(c, prefix(j))),

  allocate: (alloc, c) => extra(c).map((j) => alloc.layer(c, prefix(j))),

  attach(ctx, trunk, heads) {
    const { arena, config: c } = ctx;
    const nh = heads.length;
    const kv = allocKv(arena, c, ctx.capacity, nh);
    // z[j]: head j's output over a block, one set per block size (prefill chunks, decode block).
    const zFor = new Map<number, Tensor[]>();
    const z = (rows: number) => {
      let t = zFor.get(rows);
      if (!t) {
        t = heads.map((_, j) => arena.tensor(`${prefix(j)}.out[${rows}]`, [rows, c.dModel]));
        zFor.set(rows, t);
      }
      return t;
    };
    let sel: Scratch | null = null;
    let draftLogits: Tensor | null = null;
    return {
      // z_j = layer_j(h): also fills head j's KV cache at the block's positions.
      block: ({ s, positions }) =>
        heads.flatMap((lw, j) =>
          layer(ctx, lw, {
            output: z(s.rows)[j],
            input: s.h,
            positions,
            kv: kv[j],
            s,
            label: prefix(j),
          })
        ),

      logits({ s }) {
        const out = heads.map((_, j) => arena.tensor(`${prefix(j)}.logits`, [s.rows, c.vocabSize]));
        return {
          // logits_j = RMSNorm(z_j) W_unembed^T
          program: out.flatMap((logits, j) =>
            unembed(ctx, trunk, { logits, x: z(s.rows)[j], s, label: prefix(j) })
          ),
          heads: out.map((tensor) => ({ tensor, offset: 0, rowStride: c.vocabSize })),
        };
      },

      draft({ s, row, ids }) {
        sel ??= allocScratch(arena, c, nh, ctx.capacity);
        draftLogits ??= arena.tensor("mtp_heads.draft_logits", [nh, c.vocabSize]);
        const out: Dispatch[] = [];
        // x_j = z_j[row]
        for (let j = 0; j < nh; j++) {
          out.push(...gatherRows(arena, {
            x: z(s.rows)[j],
            out: sel.h,
            index: row,
            rows: s.rows,
            dim: c.dModel,
            outRow: j,
            done: ctx.done,
            label: `${prefix(j)}.select`,
          }));
        }
        return [
          ...out,
          // logits_j = RMSNorm(x_j) W_unembed^T
          ...unembed(ctx, trunk, { logits: draftLogits, x: sel.h, s: sel, label: "mtp_heads" }),
          // d_j = argmax(logits_j) -> ids[1 + j]
          ...argmax(arena, {
            logits: draftLogits,
            out: ids,
            outOffset: 1,
            rows: nh,
            n: c.vocabSize,
            done: ctx.done,
            label: "mtp_heads.argmax",
          }),
        ];
      },
    };
  },

  reference: (c, t, { h }) => extra(c).map((j) => unembedRef(c, t, layerRef(c, t, prefix(j), h))),
};
