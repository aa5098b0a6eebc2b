/**
 * Sequential MTP modules (DeepSeek-V3, Xiaomi MiMo, GLM-4.5): head k + 1 is module k, which at
 * position i reads the previous depth's hidden state h^{k-1}_i and the embedding of token t_{i+k}:
 *
 *   x = W_in [RMSNorm(h^{k-1}_i) g_h ; RMSNorm(Emb(t_{i+k})) g_e]    (MiMo's order; DeepSeek's is
 *                                                                      [token ; hidden])
 *   h^k_i = layer_k(x)        one decoder layer of the trunk's kind, with its own KV cache
 *   logits = RMSNorm(h^k_i) g_k W_unembed^T     predicts t_{i+k+1}
 *
 * h^0 is the trunk's output after its final norm (what vLLM and SGLang pass); the embedding at
 * position 0 is zeros, as vLLM makes it. For k >= 2, DeepSeek passes h^{k-1} as the layer left it
 * and MiMo after module k-1's final norm; both are followed. Teacher-forced (`forward`), head
 * k + 1 has T - k rows for T tokens: t_{i+k} must exist.
 *
 * Decoding keeps every module's KV cache exact: after each verify step, each module runs over the
 * block's rows again, now that the verifier has written their next tokens (the rows past the
 * accepted ones hold junk that the next step overwrites before anything attends to it). Then
 * draft 1 comes from module 1 at the last accepted row; draft j <= modules from module j over the
 * drafts before it; past the trained modules, the last one is applied again one position further
 * on, reading its own output, as vLLM and llama.cpp do. Everything stays on the GPU: each module
 * keeps its outputs by position, so the next module and the next draft read them by index.
 * @module
 */
import type { Tensor } from "../gpu/arena.ts";
import type { Dispatch, Matrix } from "../kernels/dispatch.ts";
import { argmax } from "../kernels/argmax.ts";
import { embed } from "../kernels/embed.ts";
import { gatherRows, type GpuIndex } from "../kernels/gather_rows.ts";
import { mtpConcat } from "../kernels/mtp_concat.ts";
import { mtpRows } from "../kernels/mtp_rows.ts";
import { embedRef, matmulRef, rmsnormRef } from "../kernels/reference.ts";
import { scatterRows } from "../kernels/scatter_rows.ts";
import type { ModelConfig } from "../model/config.ts";
import { get, layerRef } from "../model/reference.ts";
import { allocKv, allocScratch, layer, normLinear, project, type Scratch } from "../model/trunk.ts";
import { layerTensorShapes, type LayerWeights } from "../model/weights.ts";
import type { HeadKind } from "./kind.ts";

/** The weights of one MTP module. */
export interface MtpModule {
  /** RMSNorm of the hidden input: MiMo's hidden_layernorm, DeepSeek's hnorm. [dModel] */
  hiddenNorm: Tensor;
  /** RMSNorm of the token's embedding: token_layernorm, enorm. [dModel] */
  tokenNorm: Tensor;
  /** The projection of the two: input_proj, eh_proj. [dModel, 2 dModel] */
  inputProj: Matrix;
  /** Its decoder layer, the trunk's kind. */
  layer: LayerWeights;
  /** The norm before the unembedding: final_layernorm, shared_head.norm. [dModel] */
  finalNorm: Tensor;
  /** Its own unembedding (DeepSeek's shared_head.head), or null for the trunk's. */
  lmHead: Matrix | null;
}

/** Checkpoint names of one MTP module's own tensors (its decoder layer's are under `prefix`). */
export interface MtpNames {
  /** Prefix of the module's tensors and of its decoder layer's. */
  prefix: string;
  /** The hidden input's norm. */
  hiddenNorm: string;
  /** The token embedding's norm. */
  tokenNorm: string;
  /** The [2 dModel -> dModel] projection. */
  inputProj: string;
  /** The norm before the unembedding. */
  finalNorm: string;
  /** The module's own unembedding, when it has one (DeepSeek's shared_head.head). */
  lmHead: string;
}

/** Checkpoint names of module `i` in the configured layout. */
export function mtpNames(c: ModelConfig, i: number): MtpNames {
  if (c.mtpLayout === "deepseek") {
    const p = `model.layers.${c.nLayers + i}`;
    return {
      prefix: p,
      hiddenNorm: `${p}.hnorm.weight`,
      tokenNorm: `${p}.enorm.weight`,
      inputProj: `${p}.eh_proj.weight`,
      finalNorm: `${p}.shared_head.norm.weight`,
      lmHead: `${p}.shared_head.head.weight`,
    };
  }
  const p = `model.mtp_layers.${i}`;
  return {
    prefix: p,
    hiddenNorm: `${p}.hidden_layernorm.weight`,
    tokenNorm: `${p}.token_layernorm.weight`,
    inputProj: `${p}.input_proj.weight`,
    finalNorm: `${p}.final_layernorm.weight`,
    lmHead: `${p}.lm_head.weight`,
  };
}

const modules = (c: ModelConfig) => Array.from({ length: c.nFuture - 1 }, (_, i) => i);

/** Sequential MTP modules, in MiMo's or DeepSeek-V3's layout. */
export const sequentialHeads: HeadKind<MtpModule[]> = {
  name: "sequential",

  tensorShapes: (c) =>
    modules(c).flatMap((i) => {
      const n = mtpNames(c, i), d = c.dModel;
      const t: [string, number[]][] = [
        [n.hiddenNorm, [d]],
        [n.tokenNorm, [d]],
        [n.inputProj, [d, 2 * d]],
        ...layerTensorShapes(c, n.prefix),
        [n.finalNorm, [d]],
      ];
      if (c.headsOwnUnembedding) t.push([n.lmHead, [c.vocabSize, d]]);
      return t;
    }),

  allocate: (alloc, c) =>
    modules(c).map((i) => {
      const n = mtpNames(c, i), d = c.dModel;
      return {
        hiddenNorm: alloc.vectors(n.hiddenNorm, [n.hiddenNorm], d),
        tokenNorm: alloc.vectors(n.tokenNorm, [n.tokenNorm], d),
        inputProj: alloc.matrix(n.inputProj, [[n.inputProj, d]], 2 * d),
        layer: alloc.layer(c, n.prefix),
        finalNorm: alloc.vectors(n.finalNorm, [n.finalNorm], d),
        lmHead: c.headsOwnUnembedding ? alloc.matrix(n.lmHead, [[n.lmHead, c.vocabSize]], d) : null,
      };
    }),

  attach(ctx, trunk, mods, k = ctx.config.nFuture) {
    const { arena, config: c, done } = ctx;
    const d = c.dModel;
    const nm = mods.length;
    const kv = allocKv(arena, c, ctx.capacity, nm);
    // out[m]: module m's layer output (before its final norm) at each position.
    const out = mods.map((_, m) => arena.tensor(`mtp.${m}.out`, [ctx.capacity, d]));
    const trash = ctx.capacity - 1; // a position no row ever attends to
    const mimo = c.mtpLayout === "mimo";
    // The norm applied to a hidden input before the module's own: module -1 is the trunk.
    const preNorm = (source: number) =>
      source < 0 ? trunk.norm : mimo ? mods[source].finalNorm : null;
    const head = (m: number) => mods[m].lmHead ?? trunk.lmHead;

    const buffers = new Map<number, Record<string, Tensor>>();
    const rowsBuffers = (rows: number) => {
      let b = buffers.get(rows);
      if (!b) {
        const f = (name: string, n: number) => arena.tensor(`mtp.${name}[${rows}]`, [rows, n]);
        b = {
          pos: arena.tensor(`mtp.pos[${rows}]`, [rows], "u32"),
          tok: arena.tensor(`mtp.tok[${rows}]`, [rows], "u32"),
          e: f("e", d),
          x2: f("x2", 2 * d),
          x: f("x", d),
          y: f("y", d),
        };
        buffers.set(rows, b);
      }
      return b;
    };
    const scratches = new Map<number, Scratch>();
    const scratch = (rows: number) => {
      let s = scratches.get(rows);
      if (!s) {
        s = allocScratch(arena, c, rows, ctx.capacity);
        scratches.set(rows, s);
      }
      return s;
    };

    /**
     * One run of module m over `rows` rows (placed and given tokens by mtp_rows.wgsl); the
     * hidden input is the trunk's rows `h`, or module `source`'s outputs at position + shift.
     */
    const run = (m: number, o: {
      s: Scratch;
      start: number;
      headRow?: GpuIndex;
      positions: Tensor;
      ahead: number;
      src: Tensor;
      fromIds: boolean;
      hidden: { h: Tensor } | { source: number; shift: number };
      label: string;
    }): Dispatch[] => {
      const rows = o.s.rows;
      const b = rowsBuffers(rows);
      const w = mods[m];
      const fromTrunk = "h" in o.hidden;
      return [
        // position and token of each row
        ...mtpRows(arena, {
          rows,
          start: o.start,
          headRow: o.headRow,
          positions: o.positions,
          ahead: o.ahead,
          src: o.src,
          srcLen: o.src.shape[0],
          fromIds: o.fromIds,
          trash,
          outPos: b.pos,
          outTok: b.tok,
          done,
          label: `${o.label}.rows`,
        }),
        // e = Emb(t_{i+k})
        ...embed(arena, {
          rows,
          out: b.e,
          ids: b.tok,
          table: trunk.embed,
          done,
          label: `${o.label}.embed`,
        }),
        // x2 = [RMSNorm(h) g_h ; RMSNorm(e) g_e] (h first normed by the norm before, if any)
        ...mtpConcat(arena, {
          rows,
          dim: d,
          eps: c.normEps,
          pos: b.pos,
          h: "h" in o.hidden ? o.hidden.h : out[o.hidden.source],
          history: "h" in o.hidden ? undefined : { shift: o.hidden.shift },
          e: b.e,
          gh: w.hiddenNorm,
          ge: w.tokenNorm,
          preNorm: preNorm(fromTrunk ? -1 : (o.hidden as { source: number }).source),
          hiddenFirst: mimo,
          out: b.x2,
          done,
          label: `${o.label}.concat`,
        }),
        // x = x2 W_in^T
        ...project(ctx, { y: b.x, x: b.x2, w: w.inputProj, rows, label: `${o.label}.input_proj` }),
        // y = layer_m(x), filling module m's KV cache at the rows' positions
        ...layer(ctx, w.layer, {
          output: b.y,
          input: b.x,
          positions: b.pos,
          kv: kv[m],
          s: o.s,
          label: o.label,
        }),
        // out_m[pos] = y
        ...scatterRows(arena, {
          rows,
          dim: d,
          pos: b.pos,
          x: b.y,
          out: out[m],
          done,
          label: `${o.label}.keep`,
        }),
      ];
    };

    let sel: Scratch | null = null;
    let draftLogits: Tensor | null = null;
    /** ids[j] = argmax RMSNorm(out_m[positions[0] + add]) g_m W^T: draft j from module m. */
    const pick = (m: number, positions: Tensor, add: number, ids: Tensor, j: number) => {
      sel ??= allocScratch(arena, c, 1, ctx.capacity);
      draftLogits ??= arena.tensor("mtp.draft_logits", [1, c.vocabSize]);
      return [
        ...gatherRows(arena, {
          x: out[m],
          out: sel.h,
          index: { buffer: positions.buffer, at: 0 },
          add,
          rows: ctx.capacity,
          dim: d,
          outRow: 0,
          done,
          label: `mtp.draft${j}.select`,
        }),
        ...normLinear(ctx, sel, {
          y: draftLogits,
          x: sel.h,
          norm: mods[m].finalNorm,
          w: head(m),
          label: `mtp.draft${j}.lm_head`,
        }),
        ...argmax(arena, {
          logits: draftLogits,
          out: ids,
          outOffset: j,
          rows: 1,
          n: c.vocabSize,
          done,
          label: `mtp.draft${j}.argmax`,
        }),
      ];
    };

    return {
      // Prefill chunks and forwards: module k + 1 (m = k) at positions q = pos + 1 - (m + 1) + r,
      // reading t_{q + m + 1}. Decode blocks catch up in `draft`, once their tokens are known.
      block: (b) =>
        !b.next ? [] : mods.flatMap((_, m) =>
          run(m, {
            s: b.s,
            start: -m,
            positions: b.positions,
            ahead: m + 1,
            src: b.next!,
            fromIds: false,
            hidden: m === 0 ? { h: b.s.h } : { source: m - 1, shift: 0 },
            label: `mtp.${m}`,
          })
        ),

      logits({ s }) {
        // Module m's outputs sit at positions 0 .. rows - m - 2, which in a forward are rows.
        const logits = mods.map((_, m) => arena.tensor(`mtp.${m}.logits`, [s.rows, c.vocabSize]));
        return {
          program: mods.flatMap((w, m) =>
            normLinear(ctx, s, {
              y: logits[m],
              x: out[m],
              norm: w.finalNorm,
              w: head(m),
              label: `mtp.${m}.lm_head`,
            })
          ),
          heads: logits.map((tensor, m) => ({
            tensor,
            offset: 0,
            rowStride: c.vocabSize,
            rows: Math.max(0, s.rows - m - 1),
          })),
        };
      },

      draft({ s, row, ids, positions, tokens }) {
        const prog: Dispatch[] = [];
        // Catch up: the block's rows at P .. P + k - 1, P = positions[0] - row - 1 (the verifier
        // already moved positions on), now that t_{P+1} .. t_{P+row+1} are known.
        mods.forEach((_, m) =>
          prog.push(...run(m, {
            s,
            start: -m,
            headRow: row,
            positions,
            ahead: m + 1,
            src: tokens,
            fromIds: false,
            hidden: m === 0 ? { h: s.h } : { source: m - 1, shift: 0 },
            label: `mtp.${m}.catch_up`,
          }))
        );
        // The last accepted position is p = positions[0] - 1; t_{p+1} = ids[0] is known.
        for (let j = 1; j < k; j++) {
          if (j === 1) {
            // Module 1 at p: its catch-up row.
            prog.push(...pick(0, positions, -1, ids, 1));
          } else if (j <= nm) {
            // Module j over p + 2 - j .. p, reading drafts 1 .. j - 1 as its tokens.
            prog.push(
              ...run(j - 1, {
                s: scratch(j - 1),
                start: 1 - j,
                positions,
                ahead: j,
                src: ids,
                fromIds: true,
                hidden: { source: j - 2, shift: 0 },
                label: `mtp.draft${j}`,
              }),
              ...pick(j - 1, positions, -1, ids, j),
            );
          } else {
            // The last module again, at p + j - nm, on its own output one position back.
            prog.push(
              ...run(nm - 1, {
                s: scratch(1),
                start: j - nm - 1,
                positions,
                ahead: nm,
                src: ids,
                fromIds: true,
                hidden: { source: nm - 1, shift: -1 },
                label: `mtp.draft${j}`,
              }),
              ...pick(nm - 1, positions, j - nm - 1, ids, j),
            );
          }
        }
        return prog;
      },
    };
  },

  reference(c, t, { h, tokens }) {
    const d = c.dModel, n = tokens.length;
    const rows = (x: Float64Array, r: number) => x.subarray(0, r * d);
    let prev = h; // the hidden input of the next module, before `prevNorm`
    let prevNorm: Float32Array | null = get(t, "model.norm.weight");
    return modules(c).map((i) => {
      const k = i + 1, r = Math.max(0, n - k), names = mtpNames(c, i);
      let hid: Float64Array = Float64Array.from(rows(prev, r));
      if (prevNorm) hid = rmsnormRef(hid, prevNorm, d, c.normEps);
      const hn = rmsnormRef(hid, get(t, names.hiddenNorm), d, c.normEps);
      const e = embedRef(get(t, "model.embed_tokens.weight"), d, tokens.slice(k));
      e.fill(0, 0, Math.min(d, e.length)); // position 0 embeds nothing
      const en = rmsnormRef(e, get(t, names.tokenNorm), d, c.normEps);
      const x2 = new Float64Array(r * 2 * d);
      const [first, second] = c.mtpLayout === "mimo" ? [hn, en] : [en, hn];
      for (let q = 0; q < r; q++) {
        x2.set(first.subarray(q * d, (q + 1) * d), q * 2 * d);
        x2.set(second.subarray(q * d, (q + 1) * d), q * 2 * d + d);
      }
      const y = r
        ? layerRef(c, t, names.prefix, matmulRef(x2, get(t, names.inputProj), 2 * d))
        : x2;
      const fn = get(t, names.finalNorm);
      const w = c.headsOwnUnembedding
        ? get(t, names.lmHead)
        : get(t, c.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
      prev = y;
      prevNorm = c.mtpLayout === "mimo" ? fn : null;
      return matmulRef(rmsnormRef(y, fn, d, c.normEps), w, d);
    });
  },
};
