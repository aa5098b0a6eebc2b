/**
 * One training step on the GPU, as flat lists of kernel launches: the trunk's forward with the
 * activations its backward needs, then each head in turn (Meta's memory-efficient order:
 * forward, loss and backward of one head, accumulating the gradient at the trunk's output, its
 * logits freed for the next), then the trunk's backward mirrored layer by layer, the embedding's
 * gradient, and AdamW with global-norm clipping and the learning-rate schedule on the GPU.
 *
 * The loss is the sum of the heads' mean cross-entropies (Meta's): head j of row t predicts the
 * token j + 1 after t. With `trainTrunk: false` the trunk is frozen (Medusa-1 style): its forward
 * runs, only the heads learn. Both head kinds train: transformer heads (one layer each, Meta's)
 * and Medusa heads (v_j = u + silu(W_j u + b_j) on u = RMSNorm(h), then the shared or the
 * head's own unembedding), whose ResBlocks run for all heads in one stacked matrix product.
 * @module
 */
import type { Arena, Tensor } from "../gpu/arena.ts";
import { InvalidInputError } from "../gpu/errors.ts";
import type { Dispatch, Matrix } from "../kernels/dispatch.ts";
import { add } from "../kernels/add.ts";
import { axpy } from "../kernels/axpy.ts";
import { embed } from "../kernels/embed.ts";
import { embedBackward, embedBackwardPlanWords } from "../kernels/embed_backward.ts";
import { matmul, matmulDw, matmulDx } from "../kernels/matmul.ts";
import { qkNorm } from "../kernels/qk_norm.ts";
import { qkNormBackward } from "../kernels/qk_norm_backward.ts";
import { rmsnorm } from "../kernels/rmsnorm.ts";
import { rmsnormBackward } from "../kernels/rmsnorm_backward.ts";
import { ropeBackward } from "../kernels/rope_backward.ts";
import { ropeInPlace, ropeTable } from "../kernels/rope_kv.ts";
import { swiglu } from "../kernels/swiglu.ts";
import { swigluBackward } from "../kernels/swiglu_backward.ts";
import { siluResidual } from "../kernels/silu_residual.ts";
import { siluBackward } from "../kernels/silu_backward.ts";
import { sumRows } from "../kernels/sum_rows.ts";
import { attentionBackward, attentionTrain } from "../kernels/attention_backward.ts";
import { crossEntropy } from "../kernels/cross_entropy.ts";
import { adamw, type AdamWConfig, type AdamWParam, OPT } from "../kernels/adamw.ts";
import { gradNormPartials } from "../kernels/grad_norm.ts";
import type { LayerWeights } from "../model/weights.ts";
import type { Model } from "../heads/model.ts";
import type { MedusaWeights } from "../heads/medusa.ts";
import { type MtpModule, mtpNames } from "../heads/sequential.ts";
import { columns } from "../kernels/columns.ts";
import { mtpConcat } from "../kernels/mtp_concat.ts";

/** The shape of a training batch and what learns. */
export interface StepOptions {
  /** Sequences per batch. */
  batch: number;
  /** Tokens per sequence. */
  seqLen: number;
  /** Train the trunk too (default true); false: heads only on a frozen trunk. */
  trainTrunk?: boolean;
  /** AdamW, clipping and the learning-rate schedule. */
  optimizer: AdamWConfig;
}

/** Activations of one layer that its backward reads. */
interface LayerActs {
  /** [R, d] RMSNorm(x) g1 */
  xn1: Tensor;
  /** [R, qkv] q, k, v after RoPE */
  qkv: Tensor;
  /** [R, nH hd] attention output */
  attn: Tensor;
  /** [R, nH] logsumexp of each row's scores */
  lse: Tensor;
  /** [R, d] x + attn Wo^T */
  mid: Tensor;
  /** [R, d] RMSNorm(mid) g2 */
  xn2: Tensor;
  /** [R, 2 dFF] gate and up */
  gu: Tensor;
  /** [R, dFF] swiglu(gu) */
  ff: Tensor;
}

/** A trainable tensor: the weight, its gradient and its Adam moments. */
interface Param extends AdamWParam {
  /** Checkpoint names of the tensors it holds. */
  names: string[];
}

/** What features training supports today; anything else is refused with a clear error. */
function checkTrainable(model: Model): void {
  const c = model.config;
  const bad = [
    c.dtype !== "f32" &&
    `dtype "${c.dtype}" (training keeps f32 master weights: load or create the model with dtype "f32")`,
  ].filter(Boolean);
  if (bad.length > 0) {
    throw new InvalidInputError(`training does not support ${bad.join(", ")} yet`);
  }
  for (const [name, p] of model.placements) {
    if (p.segments.length > 1) {
      throw new InvalidInputError(
        `training needs every matrix in one buffer; ${name} is split over the binding limit`,
      );
    }
  }
}

const elements = (m: Matrix) => m.outputs * (m.gated ? 2 : 1) * m.cols;

/** The GPU program of training steps and held-out evaluation for one model and batch shape. */
export class TrainProgram {
  /** The model being trained (f32 weights, updated in place). */
  readonly model: Model;
  /** Rows of a batch: batch * seqLen. */
  readonly rows: number;
  /** Tokens per sequence. */
  readonly seqLen: number;
  /** [R] u32 input ids of the batch (written by the host before each step). */
  readonly ids: Tensor;
  /** [nFuture, R] u32 targets: row j holds head j's (the token j + 1 after each row). */
  readonly targets: Tensor;
  /**
   * [nFuture - 1, R] u32, sequential MTP modules only: the token module k + 1 embeds at each
   * row (targets row k, but none at a sequence's position 0, as vLLM has it); see `upload`.
   */
  readonly mtpIds: Tensor | null;
  /** [embedBackwardPlanWords(R)] u32 the embedding backward's grouping of the ids. */
  readonly plan: Tensor;
  /** [nFuture] f32 each head's summed cross-entropy of the last step or evaluation. */
  readonly losses: Tensor;
  /** [OPT.WORDS] u32 optimizer state: steps, learning rate, norm, skips (kernels/adamw.ts). */
  readonly optState: Tensor;
  /** The launches of one training step. */
  readonly step: Dispatch[];
  /** The launches of one evaluation (forward and losses only). */
  readonly evaluate: Dispatch[];
  /** The trained tensors (weights, gradients, moments). */
  readonly params: Param[];
  /** Gradients to zero before each step. */
  readonly grads: Tensor[];
  readonly #arena: Arena;
  /** Scratch that backward accumulates into, cleared with the gradients. */
  readonly #accumulators: Tensor[] = [];

  /** Builds the buffers and programs; the model must stay alive as long as this. */
  constructor(model: Model, o: StepOptions) {
    checkTrainable(model);
    const c = model.config;
    const a = this.#arena = model.gpu.arena("training");
    const R = this.rows = o.batch * o.seqLen;
    this.seqLen = o.seqLen;
    const d = c.dModel, nh = c.nFuture;
    const trainTrunk = o.trainTrunk ?? true;
    const sequential = c.headKind === "sequential" ? model.heads as MtpModule[] : [];
    if (sequential.length > 0 && trainTrunk) {
      throw new InvalidInputError(
        "sequential MTP modules train on a frozen trunk only: pass trainTrunk: false " +
          "(deno task train --heads-only)",
      );
    }
    this.mtpIds = sequential.length > 0 ? a.tensor("mtp ids", [nh - 1, R], "u32") : null;
    this.model = model;
    this.ids = a.tensor("ids", [R], "u32");
    this.targets = a.tensor("targets", [nh, R], "u32");
    this.plan = a.tensor("embed plan", [embedBackwardPlanWords(R)], "u32");
    this.losses = a.tensor("losses", [nh]);
    this.optState = a.tensor("optimizer state", [OPT.WORDS], "u32");
    const positions = a.tensor(
      "positions",
      [R],
      "u32",
      Uint32Array.from({ length: R }, (_, r) => r % o.seqLen),
    );
    const rope = a.tensor("rope", [o.seqLen, c.headDim / 2, 2], "f32", ropeTable(o.seqLen, c));
    const f = (name: string, n: number) => a.tensor(name, [R, n]);
    const qkvDim = (c.nHeads + 2 * c.nKvHeads) * c.headDim;
    const acts = (name: string): LayerActs => ({
      xn1: f(`${name}.xn1`, d),
      qkv: f(`${name}.qkv`, qkvDim),
      attn: f(`${name}.attn`, c.nHeads * c.headDim),
      lse: f(`${name}.lse`, c.nHeads),
      mid: f(`${name}.mid`, d),
      xn2: f(`${name}.xn2`, d),
      gu: f(`${name}.gu`, 2 * c.dFF),
      ff: f(`${name}.ff`, c.dFF),
    });
    // Residual stream h[l] at each layer's input (h[L] is the trunk's output), and scratch.
    const h = Array.from({ length: c.nLayers + 1 }, (_, l) => f(`h${l}`, d));
    const layerActs = Array.from({ length: c.nLayers }, (_, l) => acts(`layers.${l}`));
    const headActs = acts("head"); // reused head after head: one head's activations live at a time
    const z = f("head.out", d);
    const tmp = f("tmp", d);
    const tmpFf = f("dff", c.dFF);
    const tmpGu = f("dgu", 2 * c.dFF);
    const tmpAttn = f("dattn", c.nHeads * c.headDim);
    const tmpQkv = f("dqkv", qkvDim);
    // q/k-norm's backward needs the projection before the norm: recomputed, not kept per layer.
    const rawQkv = c.qkNorm ? f("qkv before norm", qkvDim) : tmpQkv;
    const delta = f("delta", c.nHeads);
    const xnF = f("xn final", d);
    const logits = f("logits", c.vocabSize);
    const dH = f("dH", d); // gradient at the trunk's output
    const dZ = f("dZ", d); // gradient at a head layer's output, then its input
    const shape = {
      nHeads: c.nHeads,
      nKvHeads: c.nKvHeads,
      headDim: c.headDim,
      capacity: o.seqLen,
    };
    const medusa = c.headKind === "medusa" ? model.heads as MedusaWeights | null : null;
    const heads = c.headKind === "transformer" ? model.heads as LayerWeights[] : [];
    const trunk = model.trunk;

    // Gradients, one per weight buffer (a tied unembedding shares the embedding's).
    const gradOf = new Map<GPUBuffer, Tensor>();
    this.params = [];
    const param = (names: string[], buffer: GPUBuffer, n: number, decay: boolean) => {
      const weight: Tensor = { buffer, shape: [n], dtype: "f32", label: names[0] };
      const grad = a.tensor(`grad ${names[0]}`, [n]);
      gradOf.set(buffer, grad);
      this.params.push({
        names,
        weight,
        grad,
        m: a.tensor(`m ${names[0]}`, [n]),
        v: a.tensor(`v ${names[0]}`, [n]),
        decay,
      });
    };
    const matrixParam = (m: Matrix, name: string) =>
      param([name], m.parts[0].buffer, elements(m), true);
    const vectorParam = (t: Tensor, name: string) =>
      param([name], t.buffer, t.shape.reduce((x, y) => x * y, 1), false);
    const layerParams = (w: LayerWeights, p: string) => {
      vectorParam(w.inputNorm, `${p}.input_layernorm.weight`);
      matrixParam(w.qkv, `${p}.self_attn.qkv`);
      if (w.qkvBias) vectorParam(w.qkvBias, `${p}.self_attn.qkv_bias`);
      if (w.qkNorm) vectorParam(w.qkNorm, `${p}.self_attn.qk_norm`);
      matrixParam(w.o, `${p}.self_attn.o_proj.weight`);
      if (w.oBias) vectorParam(w.oBias, `${p}.self_attn.o_proj.bias`);
      vectorParam(w.postNorm, `${p}.post_attention_layernorm.weight`);
      matrixParam(w.gateUp, `${p}.mlp.gate_up`);
      matrixParam(w.down, `${p}.mlp.down_proj.weight`);
    };
    if (trainTrunk) {
      matrixParam(trunk.embed, "model.embed_tokens.weight");
      trunk.layers.forEach((w, l) => layerParams(w, `model.layers.${l}`));
      vectorParam(trunk.norm, "model.norm.weight");
      if (!c.tieEmbeddings) matrixParam(trunk.lmHead, "lm_head.weight");
    }
    heads.forEach((w, j) => layerParams(w, `mtp_heads.${j}`));
    sequential.forEach((w, i) => {
      const n = mtpNames(c, i);
      vectorParam(w.hiddenNorm, n.hiddenNorm);
      vectorParam(w.tokenNorm, n.tokenNorm);
      matrixParam(w.inputProj, n.inputProj);
      layerParams(w.layer, n.prefix);
      vectorParam(w.finalNorm, n.finalNorm);
      if (w.lmHead) matrixParam(w.lmHead, n.lmHead);
    });
    if (medusa) {
      matrixParam(medusa.w, "medusa_head.weight");
      vectorParam(medusa.bias, "medusa_head.bias");
      medusa.unembed?.forEach((m, j) => matrixParam(m, `medusa_head.${j}.1.weight`));
    }
    this.grads = this.params.map((p) => p.grad);
    // Gradients of frozen weights go to scratch that nothing reads.
    const sink = new Map<GPUBuffer, Tensor>();
    const gradFor = (buffer: GPUBuffer, n: number): Tensor => {
      const g = gradOf.get(buffer);
      if (g) return g;
      let s = sink.get(buffer);
      if (!s) sink.set(buffer, s = a.tensor("frozen grad", [n]));
      return s;
    };
    const gM = (m: Matrix) => gradFor(m.parts[0].buffer, elements(m));
    const gV = (t: Tensor) => gradFor(t.buffer, t.shape.reduce((x, y) => x * y, 1));

    const att = { ...shape, seqLen: o.seqLen, rows: R };
    const eps = c.normEps;

    /** [q k v] = xn1 [Wq Wk Wv]^T (+ [bq bk bv]) into `y`. */
    const qkvProjection = (w: LayerWeights, s: LayerActs, y: Tensor, label: string) =>
      matmul(a, {
        x: s.xn1,
        w: w.qkv,
        bias: w.qkvBias ?? undefined,
        y,
        rows: R,
        label: `${label}.qkv_proj`,
      });

    /** output = layer(input), keeping `s`'s activations. */
    const layerForward = (
      w: LayerWeights,
      s: LayerActs,
      input: Tensor,
      output: Tensor,
      label: string,
    ): Dispatch[] => [
      ...rmsnorm(a, {
        x: input,
        weight: w.inputNorm,
        out: s.xn1,
        rows: R,
        dim: d,
        eps,
        label: `${label}.norm1`,
      }),
      ...qkvProjection(w, s, s.qkv, label),
      ...(w.qkNorm
        ? qkNorm(a, {
          ...shape,
          rows: R,
          qkv: s.qkv,
          weight: w.qkNorm,
          eps,
          label: `${label}.qk_norm`,
        })
        : []),
      ...ropeInPlace(a, { ...shape, positions, rope, qkv: s.qkv, rows: R, label: `${label}.rope` }),
      ...attentionTrain(a, {
        ...att,
        qkv: s.qkv,
        out: s.attn,
        lse: s.lse,
        label: `${label}.attention`,
      }),
      ...matmul(a, {
        x: s.attn,
        w: w.o,
        bias: w.oBias ?? undefined,
        y: tmp,
        rows: R,
        label: `${label}.o_proj`,
      }),
      ...add(a, { out: s.mid, a: input, b: tmp, n: R * d, label: `${label}.residual1` }),
      ...rmsnorm(a, {
        x: s.mid,
        weight: w.postNorm,
        out: s.xn2,
        rows: R,
        dim: d,
        eps,
        label: `${label}.norm2`,
      }),
      ...matmul(a, { x: s.xn2, w: w.gateUp, y: s.gu, rows: R, label: `${label}.gate_up_proj` }),
      ...swiglu(a, { gu: s.gu, out: s.ff, rows: R, n: c.dFF, label: `${label}.swiglu` }),
      ...matmul(a, { x: s.ff, w: w.down, y: tmp, rows: R, label: `${label}.down_proj` }),
      ...add(a, { out: output, a: s.mid, b: tmp, n: R * d, label: `${label}.residual2` }),
    ];

    /**
     * The layer's backward: `g` holds d(output) and becomes d(input) in place (the residual
     * path is the identity, the other paths are added to it); weight gradients accumulate.
     */
    const layerBackward = (
      w: LayerWeights,
      s: LayerActs,
      input: Tensor,
      g: Tensor,
      label: string,
    ): Dispatch[] => [
      // out = mid + ff Wd^T
      ...matmulDx(a, { dy: g, w: w.down, dx: tmpFf, rows: R, label: `${label}.down_proj.dx` }),
      ...matmulDw(a, {
        dy: g,
        x: s.ff,
        dw: gM(w.down),
        rows: R,
        n: d,
        k: c.dFF,
        accumulate: true,
        label: `${label}.down_proj.dw`,
      }),
      ...swigluBackward(a, {
        gu: s.gu,
        dout: tmpFf,
        dgu: tmpGu,
        rows: R,
        n: c.dFF,
        label: `${label}.swiglu.bwd`,
      }),
      ...matmulDx(a, {
        dy: tmpGu,
        w: w.gateUp,
        dx: tmp,
        rows: R,
        label: `${label}.gate_up_proj.dx`,
      }),
      ...matmulDw(a, {
        dy: tmpGu,
        x: s.xn2,
        dw: gM(w.gateUp),
        rows: R,
        n: 2 * c.dFF,
        k: d,
        accumulate: true,
        label: `${label}.gate_up_proj.dw`,
      }),
      ...rmsnormBackward(a, {
        x: s.mid,
        weight: w.postNorm,
        dy: tmp,
        dx: g,
        dWeight: gV(w.postNorm),
        rows: R,
        dim: d,
        eps,
        accumulateDx: true,
        accumulateDWeight: true,
        label: `${label}.norm2.bwd`,
      }),
      // mid = x + attn Wo^T
      ...matmulDx(a, { dy: g, w: w.o, dx: tmpAttn, rows: R, label: `${label}.o_proj.dx` }),
      ...matmulDw(a, {
        dy: g,
        x: s.attn,
        dw: gM(w.o),
        rows: R,
        n: d,
        k: c.nHeads * c.headDim,
        accumulate: true,
        label: `${label}.o_proj.dw`,
      }),
      ...(w.oBias ? biasGrad(g, w.oBias, d, `${label}.o_proj.db`) : []),
      ...attentionBackward(a, {
        ...att,
        qkv: s.qkv,
        out: s.attn,
        lse: s.lse,
        dOut: tmpAttn,
        delta,
        dqkv: tmpQkv,
        label: `${label}.attention.bwd`,
      }),
      ...ropeBackwardFor(tmpQkv, label),
      ...(w.qkNorm
        ? [
          ...qkvProjection(w, s, rawQkv, `${label}.recompute`),
          ...qkNormBackward(a, {
            ...shape,
            rows: R,
            x: rawQkv,
            dqkv: tmpQkv,
            weight: w.qkNorm,
            dWeight: gV(w.qkNorm),
            eps,
            accumulate: true,
            label: `${label}.qk_norm.bwd`,
          }),
        ]
        : []),
      ...(w.qkvBias ? biasGrad(tmpQkv, w.qkvBias, qkvDim, `${label}.qkv_proj.db`) : []),
      ...matmulDw(a, {
        dy: tmpQkv,
        x: s.xn1,
        dw: gM(w.qkv),
        rows: R,
        n: qkvDim,
        k: d,
        accumulate: true,
        label: `${label}.qkv_proj.dw`,
      }),
      ...matmulDx(a, { dy: tmpQkv, w: w.qkv, dx: tmp, rows: R, label: `${label}.qkv_proj.dx` }),
      ...rmsnormBackward(a, {
        x: input,
        weight: w.inputNorm,
        dy: tmp,
        dx: g,
        dWeight: gV(w.inputNorm),
        rows: R,
        dim: d,
        eps,
        accumulateDx: true,
        accumulateDWeight: true,
        label: `${label}.norm1.bwd`,
      }),
    ];
    const biasGrad = (dy: Tensor, bias: Tensor, cols: number, label: string) =>
      sumRows(a, { x: dy, out: gV(bias), rows: R, cols, accumulate: true, label });
    const ropeBackwardFor = (dqkv: Tensor, label: string): Dispatch[] =>
      ropeBackward(a, { ...shape, positions, rope, dqkv, rows: R, label: `${label}.rope.bwd` });

    /**
     * Head k's loss on `x` (the final norm unless `norm` is false, the unembedding,
     * cross-entropy against row k of the targets), and its backward: d(x) into `dx`, the
     * unembedding's and the norm's gradients.
     */
    const headLoss = (
      x: Tensor,
      k: number,
      dx: Tensor,
      backward: boolean,
      { norm = true, unembed = trunk.lmHead, normWeight = trunk.norm }: {
        norm?: boolean;
        unembed?: Matrix;
        normWeight?: Tensor;
      } = {},
    ): Dispatch[] => {
      const xn = norm ? xnF : x;
      const out: Dispatch[] = [
        ...(norm
          ? rmsnorm(a, {
            x,
            weight: normWeight,
            out: xnF,
            rows: R,
            dim: d,
            eps,
            label: `head${k + 1}.norm`,
          })
          : []),
        ...matmul(a, { x: xn, w: unembed, y: logits, rows: R, label: `head${k + 1}.lm_head` }),
        ...crossEntropy(a, {
          logits,
          targets: this.targets,
          targetsOffset: k * R,
          loss: lossRows,
          rows: R,
          vocab: c.vocabSize,
          scale: 1 / R,
          total: { out: this.losses, offset: k },
          label: `head${k + 1}.loss`,
        }),
      ];
      if (!backward) return out;
      return [
        ...out,
        // logits now hold d(logits)
        ...matmulDw(a, {
          dy: logits,
          x: xn,
          dw: gM(unembed),
          rows: R,
          n: c.vocabSize,
          k: d,
          accumulate: true,
          label: `head${k + 1}.lm_head.dw`,
        }),
        ...matmulDx(a, {
          dy: logits,
          w: unembed,
          dx: norm ? tmp : dx,
          rows: R,
          label: `head${k + 1}.lm_head.dx`,
        }),
        ...(norm
          ? rmsnormBackward(a, {
            x,
            weight: normWeight,
            dy: tmp,
            dx,
            dWeight: gV(normWeight),
            rows: R,
            dim: d,
            eps,
            accumulateDx: false,
            accumulateDWeight: true,
            label: `head${k + 1}.norm.bwd`,
          })
          : []),
      ];
    };
    const lossRows = a.tensor("loss rows", [R]);

    const forwardTrunk: Dispatch[] = [
      ...embed(a, { ids: this.ids, table: trunk.embed, out: h[0], rows: R, label: "embed_tokens" }),
      ...trunk.layers.flatMap((w, l) =>
        layerForward(w, layerActs[l], h[l], h[l + 1], `layers.${l}`)
      ),
    ];
    const H = h[c.nLayers];
    const headsPass = (backward: boolean): Dispatch[] => [
      // head 1: the trunk's own next-token head (its backward only matters to the trunk)
      ...headLoss(H, 0, dH, backward && trainTrunk),
      ...heads.flatMap((w, j) => [
        ...layerForward(w, headActs, H, z, `mtp_heads.${j}`),
        ...headLoss(z, j + 1, dZ, backward),
        ...(backward ? layerBackward(w, headActs, H, dZ, `mtp_heads.${j}`) : []),
        ...(backward && trainTrunk
          ? axpy(a, { x: dZ, y: dH, n: R * d, label: `mtp_heads.${j}.to_trunk` })
          : []),
      ]),
    ];
    // Medusa: u = RMSNorm(h); pre = u W^T + b for all heads at once, [R, nm d]; then for each
    // head v_j = u + silu(pre_j) and its loss; d(u) gathers the heads' gradients for the trunk.
    const nm = c.nFuture - 1;
    const u = medusa ? f("medusa.u", d) : tmp;
    const pre = medusa ? a.tensor("medusa.pre", [R, nm * d]) : tmp;
    const dPre = medusa ? a.tensor("medusa.dpre", [R, nm * d]) : tmp;
    const dU = medusa && trainTrunk ? f("medusa.du", d) : tmp;
    if (medusa && trainTrunk) this.#accumulators.push(dU);
    const medusaPass = (backward: boolean): Dispatch[] => {
      if (!medusa) return [];
      const cols = { rows: R, n: d, stride: nm * d };
      return [
        ...rmsnorm(a, {
          x: H,
          weight: trunk.norm,
          out: u,
          rows: R,
          dim: d,
          eps,
          label: "medusa.norm",
        }),
        ...matmul(a, {
          x: u,
          w: medusa.w,
          bias: medusa.bias,
          y: pre,
          rows: R,
          label: "medusa_head",
        }),
        ...Array.from({ length: nm }, (_, j) => [
          ...siluResidual(a, {
            ...cols,
            offset: j * d,
            x: pre,
            res: u,
            out: z,
            label: `medusa_head.${j}.resblock`,
          }),
          ...headLoss(z, j + 1, dZ, backward, {
            norm: false,
            unembed: medusa.unembed?.[j] ?? trunk.lmHead,
          }),
          ...(backward
            ? siluBackward(a, {
              ...cols,
              offset: j * d,
              x: pre,
              dy: dZ,
              dx: dPre,
              label: `medusa_head.${j}.resblock.bwd`,
            })
            : []),
          // The ResBlock's residual: d(u) += d(v_j).
          ...(backward && trainTrunk
            ? axpy(a, { x: dZ, y: dU, n: R * d, label: `medusa_head.${j}.to_u` })
            : []),
        ]).flat(),
        ...(backward
          ? [
            ...matmulDw(a, {
              dy: dPre,
              x: u,
              dw: gM(medusa.w),
              rows: R,
              n: nm * d,
              k: d,
              accumulate: true,
              label: "medusa_head.dw",
            }),
            ...sumRows(a, {
              x: dPre,
              out: gV(medusa.bias),
              rows: R,
              cols: nm * d,
              accumulate: true,
              label: "medusa_head.bias.bwd",
            }),
          ]
          : []),
        ...(backward && trainTrunk
          ? [
            ...matmulDx(a, {
              dy: dPre,
              w: medusa.w,
              dx: dU,
              rows: R,
              accumulate: true,
              label: "medusa_head.dx",
            }),
            ...rmsnormBackward(a, {
              x: H,
              weight: trunk.norm,
              dy: dU,
              dx: dH,
              dWeight: gV(trunk.norm),
              rows: R,
              dim: d,
              eps,
              accumulateDx: true,
              accumulateDWeight: true,
              label: "medusa.norm.bwd",
            }),
          ]
          : []),
      ];
    };
    // Sequential MTP modules (the trunk frozen): module m reads hid_m, the trunk's output after
    // its final norm (m = 0) or module m - 1's output y (DeepSeek) or its final norm of it (MiMo),
    // and the embedding of the token m + 1 after each row; x2 = [RMSNorm(hid) g_h ; RMSNorm(e)
    // g_e] (MiMo's order), x = x2 W_in^T, y = layer(x), loss on RMSNorm(y) g_f W^T. Forward and
    // loss module by module, then backward from the last module to the first, each adding its
    // hidden input's gradient to the module before's output gradient.
    const mimo = c.mtpLayout === "mimo";
    const seqActs = sequential.map((_, m) => ({
      acts: acts(`mtp.${m}`),
      hid: f(`mtp.${m}.hid`, d),
      e: f(`mtp.${m}.e`, d),
      x2: a.tensor(`mtp.${m}.x2`, [R, 2 * d]),
      x: f(`mtp.${m}.x`, d),
      y: f(`mtp.${m}.y`, d),
      dy: f(`mtp.${m}.dy`, d),
    }));
    const dX2 = sequential.length ? a.tensor("mtp.dx2", [R, 2 * d]) : tmp;
    const dHalf = sequential.length ? f("mtp.dhalf", d) : tmp;
    const dHid = sequential.length ? f("mtp.dhid", d) : tmp;
    const sequentialPass = (backward: boolean): Dispatch[] => {
      const out: Dispatch[] = [];
      sequential.forEach((w, m) => {
        const s = seqActs[m], label = `mtp.${m}`;
        const before = m === 0 ? H : seqActs[m - 1].y;
        const preNorm = m === 0 ? trunk.norm : mimo ? sequential[m - 1].finalNorm : null;
        out.push(
          // hid = RMSNorm(before) g (or before itself)
          ...(preNorm
            ? rmsnorm(a, {
              x: before,
              weight: preNorm,
              out: s.hid,
              rows: R,
              dim: d,
              eps,
              label: `${label}.hidden`,
            })
            : []),
          ...embed(a, {
            ids: this.mtpIds!,
            idsOffset: m * R,
            table: trunk.embed,
            out: s.e,
            rows: R,
            label: `${label}.embed`,
          }),
          ...mtpConcat(a, {
            rows: R,
            dim: d,
            eps,
            pos: positions,
            h: preNorm ? s.hid : before,
            e: s.e,
            gh: w.hiddenNorm,
            ge: w.tokenNorm,
            preNorm: null,
            hiddenFirst: mimo,
            out: s.x2,
            label: `${label}.concat`,
          }),
          ...matmul(a, { x: s.x2, w: w.inputProj, y: s.x, rows: R, label: `${label}.input_proj` }),
          ...layerForward(w.layer, s.acts, s.x, s.y, label),
          ...headLoss(s.y, m + 1, s.dy, backward, {
            normWeight: w.finalNorm,
            unembed: w.lmHead ?? trunk.lmHead,
          }),
        );
      });
      if (!backward) return out;
      for (let m = sequential.length - 1; m >= 0; m--) {
        const w = sequential[m], s = seqActs[m], label = `mtp.${m}`;
        const hid = m === 0 || mimo ? s.hid : seqActs[m - 1].y;
        const [hOff, eOff] = mimo ? [0, d] : [d, 0];
        out.push(
          ...layerBackward(w.layer, s.acts, s.x, s.dy, label), // s.dy becomes d(x)
          ...matmulDw(a, {
            dy: s.dy,
            x: s.x2,
            dw: gM(w.inputProj),
            rows: R,
            n: d,
            k: 2 * d,
            accumulate: true,
            label: `${label}.input_proj.dw`,
          }),
          ...matmulDx(a, {
            dy: s.dy,
            w: w.inputProj,
            dx: dX2,
            rows: R,
            label: `${label}.input_proj.dx`,
          }),
          // the token half: only g_e learns (the embedding is the frozen trunk's)
          ...columns(a, { x: dX2, out: dHalf, rows: R, n: d, stride: 2 * d, offset: eOff }),
          ...rmsnormBackward(a, {
            x: s.e,
            weight: w.tokenNorm,
            dy: dHalf,
            dx: tmp,
            dWeight: gV(w.tokenNorm),
            rows: R,
            dim: d,
            eps,
            accumulateDWeight: true,
            label: `${label}.token_norm.bwd`,
          }),
          ...columns(a, { x: dX2, out: dHalf, rows: R, n: d, stride: 2 * d, offset: hOff }),
          ...rmsnormBackward(a, {
            x: hid,
            weight: w.hiddenNorm,
            dy: dHalf,
            dx: dHid,
            dWeight: gV(w.hiddenNorm),
            rows: R,
            dim: d,
            eps,
            accumulateDWeight: true,
            label: `${label}.hidden_norm.bwd`,
          }),
        );
        if (m === 0) continue;
        // d(y of module m - 1) += d(hid), through MiMo's final norm of it
        const prev = seqActs[m - 1];
        out.push(
          ...(mimo
            ? rmsnormBackward(a, {
              x: prev.y,
              weight: sequential[m - 1].finalNorm,
              dy: dHid,
              dx: prev.dy,
              dWeight: gV(sequential[m - 1].finalNorm),
              rows: R,
              dim: d,
              eps,
              accumulateDx: true,
              accumulateDWeight: true,
              label: `${label}.hidden.bwd`,
            })
            : axpy(a, { x: dHid, y: prev.dy, n: R * d, label: `${label}.to_${m - 1}` })),
        );
      }
      return out;
    };
    const backwardTrunk: Dispatch[] = trainTrunk
      ? [
        ...trunk.layers.flatMap((_, i) => {
          const l = c.nLayers - 1 - i;
          return layerBackward(trunk.layers[l], layerActs[l], h[l], dH, `layers.${l}`);
        }),
        ...embedBackward(a, {
          plan: this.plan,
          dh: dH,
          dE: gM(trunk.embed),
          rows: R,
          dim: d,
          vocab: c.vocabSize,
          label: "embed_tokens.bwd",
        }),
      ]
      : [];
    const grads = this.params.map((p) => p.grad);
    this.step = [
      ...forwardTrunk,
      ...headsPass(true),
      ...medusaPass(true),
      ...sequentialPass(true),
      ...backwardTrunk,
      ...adamw(a, {
        params: this.params,
        state: this.optState,
        partial: a.tensor("grad norm partial", [gradNormPartials(grads)]),
        norm: a.tensor("grad norm", [1]),
        config: o.optimizer,
        label: "adamw",
      }),
    ];
    this.evaluate = [
      ...forwardTrunk,
      ...headsPass(false),
      ...medusaPass(false),
      ...sequentialPass(false),
    ];
  }

  /**
   * Buffers cleared by the trainer at the start of each step: every gradient, and the scratch
   * that the backward accumulates into.
   */
  get gradBuffers(): GPUBuffer[] {
    return [...this.grads, ...this.#accumulators].map((g) => g.buffer);
  }

  /** Frees the training buffers (the model's weights stay). */
  dispose(): void {
    this.#arena.dispose();
  }
}
