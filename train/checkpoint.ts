/**
 * Training checkpoints: the model (saveModel: config.json + model.safetensors) and, beside it,
 * optimizer.safetensors with the Adam moments, the optimizer state and what a resume must check
 * (the step, the tokenizer). A checkpoint is written to a temporary folder that then replaces
 * the old one, so a crash never leaves a half-written checkpoint.
 * @module
 */
import { join } from "node:path";
import { CheckpointError } from "../gpu/errors.ts";
import { writeBuffer } from "../gpu/arena.ts";
import { saveModel } from "../io/save.ts";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import { OPT } from "../kernels/adamw.ts";
import type { TrainProgram } from "./program.ts";

/** What a checkpoint records besides the tensors. */
export interface CheckpointInfo {
  /** Training steps done. */
  step: number;
  /** Identifies the tokenizer ("bytes", or tokenizer.json's path and size). */
  tokenizer: string;
  /** Any other strings to keep (the command, data). */
  [key: string]: string | number;
}

/** Writes the model and the optimizer state to `dir`, replacing what was there. */
export async function saveCheckpoint(
  program: TrainProgram,
  dir: string,
  info: CheckpointInfo,
): Promise<void> {
  const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await saveModel(program.model, tmp);
    const gpu = program.model.gpu;
    const tensors: TensorToWrite[] = [];
    for (const p of program.params) {
      const n = p.weight.shape[0];
      for (const [kind, t] of [["m", p.m], ["v", p.v]] as const) {
        const data = new Float32Array(await gpu.read(t.buffer, n * 4), 0, n);
        tensors.push({ name: `${kind}.${p.names[0]}`, dtype: "F32", shape: [n], data });
      }
    }
    const state = new Uint32Array(await gpu.read(program.optState.buffer, OPT.WORDS * 4));
    tensors.push({
      name: "optimizer_state",
      dtype: "I32",
      shape: [OPT.WORDS],
      data: new Int32Array(state.buffer),
    });
    await writeSafetensors(
      join(tmp, "optimizer.safetensors"),
      tensors,
      Object.fromEntries(Object.entries(info).map(([k, v]) => [k, String(v)])),
    );
    const old = `${dir}.old-${crypto.randomUUID().slice(0, 8)}`;
    const exists = await Deno.stat(dir).then(() => true, () => false);
    if (exists) await Deno.rename(dir, old);
    await Deno.rename(tmp, dir);
    if (exists) await Deno.remove(old, { recursive: true });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/**
 * Restores the optimizer state saved with `saveCheckpoint` into `program` (whose model was
 * loaded from the same folder); returns the checkpoint's info.
 *
 * @throws {CheckpointError} when the checkpoint was made for another configuration (its moments
 * do not match the model's tensors) or with another tokenizer.
 */
export async function restoreOptimizer(
  program: TrainProgram,
  dir: string,
  o: { tokenizer: string },
): Promise<CheckpointInfo> {
  const file = join(dir, "optimizer.safetensors");
  const st = await openSafetensors(file).catch((e) => {
    throw new CheckpointError(`${file}: cannot resume from it: ${(e as Error).message}`);
  });
  try {
    const meta = st.metadata;
    if (meta.tokenizer !== o.tokenizer) {
      throw new CheckpointError(
        `${file}: trained with tokenizer ${meta.tokenizer}, resuming with ${o.tokenizer}: ` +
          `resume with the same tokenizer, or start a new run`,
      );
    }
    const gpu = program.model.gpu;
    for (const p of program.params) {
      for (const [kind, t] of [["m", p.m], ["v", p.v]] as const) {
        const name = `${kind}.${p.names[0]}`;
        const info = st.tensors.get(name);
        if (!info || info.byteLength !== p.weight.shape[0] * 4) {
          throw new CheckpointError(
            `${file}: ${
              info
                ? `${name} has ${info.byteLength / 4} values, the model ${p.weight.shape[0]}`
                : `no ${name}`
            }: ` +
              `the checkpoint is from another model configuration`,
          );
        }
        writeBuffer(gpu.device, t.buffer, await st.read(name));
      }
    }
    const state = st.tensors.get("optimizer_state");
    if (!state) throw new CheckpointError(`${file}: no optimizer_state`);
    writeBuffer(gpu.device, program.optState.buffer, await st.read("optimizer_state"));
    return { ...meta, step: Number(meta.step), tokenizer: meta.tokenizer };
  } finally {
    st.close();
  }
}
