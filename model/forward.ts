/**
 * A full forward over a token sequence that returns the logits of every head at every position:
 * the hook for tests against the CPU reference and for comparisons with other implementations.
 * @module
 */
import { InvalidInputError } from "../gpu/errors.ts";
import { run } from "../kernels/dispatch.ts";
import { ropeTable } from "../kernels/rope_kv.ts";
import { headLayers, medusaLogitsAllRows } from "../heads/heads.ts";
import { STATE_WORDS } from "../decode/state.ts";
import type { Model } from "./model.ts";
import { allocKv, allocScratch, type ForwardContext, trunk, unembed } from "./trunk.ts";

/**
 * Runs the trunk and every head over `tokens` (positions 0..n-1) and returns, per head, the
 * logits [n, vocabSize] (head 1 first). A host sync: for tests and tools, not for decoding.
 *
 * @example
 * ```ts
 * import { createModel, forward } from "@ahead/mtp";
 * const model = await createModel({ vocabSize: 64, dModel: 32, nLayers: 1, nHeads: 2, dFF: 64, maxSeqLen: 64, nFuture: 2 });
 * const [head1, head2] = await forward(model, [1, 2, 3]);
 * console.log(head1.length, head2.length); // 3 * 64 each
 * model.dispose();
 * ```
 */
export async function forward(model: Model, tokens: readonly number[]): Promise<Float32Array[]> {
  const c = model.config;
  const n = tokens.length;
  if (n === 0 || n > c.maxSeqLen) {
    throw new InvalidInputError(`forward needs 1..${c.maxSeqLen} tokens, got ${n}`);
  }
  const bad = tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= c.vocabSize);
  if (bad >= 0) {
    throw new InvalidInputError(`tokens[${bad}] = ${tokens[bad]} is outside [0, ${c.vocabSize})`);
  }
  const release = model.acquire();
  const gpu = model.gpu;
  const scope = new Set<GPUBuffer>();
  try {
    const nh = c.nFuture - 1;
    const { outputs } = gpu.inScope(scope, () => {
      const ctx: ForwardContext = {
        gpu,
        config: c,
        state: gpu.storage("state", STATE_WORDS * 4),
        rope: gpu.storage("rope", ropeTable(n, c.headDim, c.ropeTheta)),
        capacity: n,
      };
      const w = model.weights;
      const s = allocScratch(gpu, c, n, n);
      const ids = gpu.storage("ids", Uint32Array.from(tokens));
      const program = trunk(ctx, w, { ids, kv: allocKv(gpu, c, n, c.nLayers), s });
      const outputs: GPUBuffer[] = [gpu.storage("logits head 1", n * c.vocabSize * 4)];
      if (w.medusa) {
        outputs.push(gpu.storage("medusa logits", n * nh * c.vocabSize * 4));
        program.push(
          ...unembed(ctx, w, { logits: outputs[0], x: s.h, s, label: "head1" }),
          ...medusaLogitsAllRows(ctx, w, {
            logits: outputs[1],
            h: s.h,
            s,
            stacked: gpu.storage("medusa out", n * nh * c.dModel * 4),
          }),
        );
      } else {
        const z = w.headLayers.map((_, j) => gpu.storage(`head ${j + 2} out`, n * c.dModel * 4));
        program.push(
          ...headLayers(ctx, w, { z, h: s.h, kv: allocKv(gpu, c, n, nh), s }),
          ...unembed(ctx, w, { logits: outputs[0], x: s.h, s, label: "head1" }),
        );
        z.forEach((zj, j) => {
          outputs.push(gpu.storage(`logits head ${j + 2}`, n * c.vocabSize * 4));
          program.push(
            ...unembed(ctx, w, { logits: outputs[j + 1], x: zj, s, label: `head${j + 2}` }),
          );
        });
      }
      run(gpu, program, "forward");
      return { outputs };
    });
    const read = await Promise.all(outputs.map((b) => gpu.read(b, b.size)));
    const v = c.vocabSize;
    if (model.weights.medusa) {
      const all = new Float32Array(read[1]);
      const perHead = Array.from({ length: nh }, () => new Float32Array(n * v));
      for (let r = 0; r < n; r++) {
        for (let j = 0; j < nh; j++) {
          perHead[j].set(all.subarray((r * nh + j) * v, (r * nh + j + 1) * v), r * v);
        }
      }
      return [new Float32Array(read[0], 0, n * v), ...perHead];
    }
    return read.map((b) => new Float32Array(b, 0, n * v));
  } finally {
    gpu.freeAll(scope);
    release();
  }
}
