/**
 * A full forward over a token sequence that returns the logits of every head at every position:
 * the hook for tests against the CPU reference and for comparisons with other implementations.
 * @module
 */
import { InvalidInputError, ModelStateError } from "../gpu/errors.ts";
import { run } from "../kernels/dispatch.ts";
import { ropeTable } from "../kernels/rope_kv.ts";
import { allocKv, allocScratch, type ForwardContext, trunk, unembed } from "../model/trunk.ts";
import type { Model } from "./model.ts";
import { describeValue } from "../gpu/errors.ts";

/**
 * Runs the trunk and every head over `tokens` (positions 0..n-1) and returns, per head, the
 * logits [n, vocabSize] row-major (head 1 first). Sequential MTP modules are teacher-forced:
 * module k reads the true token t_{i+k} at row i, so head k + 1 has only n - k rows. A host
 * sync: for tests and tools, not for decoding.
 *
 * @throws {InvalidInputError} for ids outside the vocabulary or more than maxSeqLen tokens;
 * {@link ModelStateError} if the model is disposed, before or during the call.
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
  if (!Array.isArray(tokens)) {
    throw new InvalidInputError(
      `tokens must be an array of token ids, got ${describeValue(tokens)}`,
    );
  }
  const n = tokens.length;
  if (n === 0 || n > c.maxSeqLen) {
    throw new InvalidInputError(`forward needs 1..${c.maxSeqLen} tokens, got ${n}`);
  }
  const bad = tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= c.vocabSize);
  if (bad >= 0) {
    throw new InvalidInputError(
      `tokens[${bad}] = ${describeValue(tokens[bad])} is outside [0, ${c.vocabSize})`,
    );
  }
  const limit = model.gpu.device.limits.maxStorageBufferBindingSize;
  if (n * c.vocabSize * 4 > limit) {
    throw new InvalidInputError(
      `the logits of ${n} tokens take ${n * c.vocabSize * 4} bytes, over this device's binding ` +
        `limit of ${limit}: call forward on at most ${
          Math.floor(limit / (4 * c.vocabSize))
        } tokens`,
    );
  }
  const release = model.acquire();
  const arena = model.gpu.arena("forward");
  try {
    const ctx: ForwardContext = {
      arena,
      config: c,
      rope: arena.tensor(
        "rope",
        [n, c.headDim / 2, 2],
        "f32",
        ropeTable(n, c),
      ),
      capacity: n,
    };
    const s = allocScratch(arena, c, n, n);
    const ids = arena.tensor("ids", [n], "u32", Uint32Array.from(tokens));
    const positions = arena.tensor("positions", [n], "u32", Uint32Array.from(tokens, (_, i) => i));
    const block = { s, ids, positions, next: ids };
    const heads = model.kind.attach(ctx, model.trunk, model.heads);
    const head1 = arena.tensor("head1.logits", [n, c.vocabSize]);
    const program = [
      ...trunk(ctx, model.trunk, { ids, positions, kv: allocKv(arena, c, n, c.nLayers), s }),
      ...heads.block(block),
      ...unembed(ctx, model.trunk, { logits: head1, x: s.h, s, label: "head1" }),
    ];
    const rest = heads.logits(block);
    program.push(...rest.program);
    run(model.gpu, program, "forward");
    const views = [{ tensor: head1, offset: 0, rowStride: c.vocabSize }, ...rest.heads];
    const read = new Map<GPUBuffer, Float32Array>();
    for (const v of views) {
      if (!read.has(v.tensor.buffer)) {
        read.set(v.tensor.buffer, new Float32Array(await model.gpu.read(v.tensor.buffer)));
      }
    }
    return views.map((v) => {
      const all = read.get(v.tensor.buffer)!;
      const rows = v.rows ?? n;
      if (v.rowStride === c.vocabSize && v.offset === 0) return all.slice(0, rows * c.vocabSize);
      const out = new Float32Array(rows * c.vocabSize);
      for (let r = 0; r < rows; r++) {
        out.set(
          all.subarray(v.offset + r * v.rowStride, v.offset + r * v.rowStride + c.vocabSize),
          r * c.vocabSize,
        );
      }
      return out;
    });
  } catch (e) {
    if (model.disposed) throw new ModelStateError("the model was disposed during forward()");
    throw e;
  } finally {
    arena.dispose();
    release();
  }
}
