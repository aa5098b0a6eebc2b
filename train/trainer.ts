/**
 * The training loop. The host uploads each batch with queue writes and submits the step: no
 * step waits on the host. Every `logEvery` steps the losses and the optimizer's status are
 * copied to a readback buffer that is mapped asynchronously and read at the next log point.
 * A NaN or infinite gradient norm is detected on the GPU (the step is skipped there); the loop
 * then stops without saving, so the last good checkpoint stays.
 * @module
 */
import { encode } from "../kernels/dispatch.ts";
import { NO_TOKEN } from "../kernels/state.ts";
import { embedBackwardPlan } from "../kernels/embed_backward.ts";
import { OPT, optimizerStatus } from "../kernels/adamw.ts";
import { GpuError, InvalidInputError } from "../gpu/errors.ts";
import { writeBuffer } from "../gpu/arena.ts";
import type { Batch } from "./data.ts";
import type { TrainProgram } from "./program.ts";

/** One line of the training log. */
export interface TrainLog {
  /** Steps done. */
  step: number;
  /** Mean cross-entropy (nats per token) of each head over the last logged steps. */
  losses: number[];
  /** Learning rate of the last step. */
  lr: number;
  /** Gradient norm of the last step (before clipping). */
  gradNorm: number;
  /** Training tokens per second since the start of this run (batch rows per step). */
  tokensPerSecond: number;
  /** Seconds since the start of this run. */
  seconds: number;
}

/** How a run ended. */
export interface TrainResult {
  /** Steps done in all (a resumed run counts the earlier ones). */
  step: number;
  /** Why it stopped. */
  stopped: "done" | "time" | "nan";
  /** The last log line. */
  last: TrainLog | null;
}

/** Uploads a batch into the program's input buffers (queue writes, ordered before the next submit). */
export function upload(program: TrainProgram, batch: Batch): void {
  const dev = program.model.gpu.device;
  writeBuffer(dev, program.ids.buffer, batch.ids);
  batch.targets.forEach((t, j) =>
    writeBuffer(dev, program.targets.buffer, t, j * program.rows * 4)
  );
  const plan = embedBackwardPlan(batch.ids, program.model.config.vocabSize);
  writeBuffer(dev, program.plan.buffer, plan);
  if (program.mtpIds) {
    // Module k + 1 embeds the token k + 1 after each row (targets row k); none at position 0.
    const seqLen = program.seqLen;
    for (let k = 0; k < program.model.config.nFuture - 1; k++) {
      const ids = Uint32Array.from(batch.targets[k]);
      for (let r = 0; r < ids.length; r += seqLen) ids[r] = NO_TOKEN;
      writeBuffer(dev, program.mtpIds.buffer, ids, k * program.rows * 4);
    }
  }
}

/** Mean loss of each head over `batches` (forward only; a host sync per batch). */
export async function evaluate(program: TrainProgram, batches: Batch[]): Promise<number[]> {
  const nh = program.model.config.nFuture;
  const sums = new Array(nh).fill(0);
  const gpu = program.model.gpu;
  for (const b of batches) {
    upload(program, b);
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    encode(pass, program.evaluate);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
    const l = new Float32Array(
      await gpu.read(program.losses.buffer, Math.ceil(nh / 4) * 16),
      0,
      nh,
    );
    l.forEach((v, j) => sums[j] += v / program.rows);
  }
  gpu.check("evaluation");
  return sums.map((s) => s / Math.max(1, batches.length));
}

/**
 * Runs steps `from` .. `to` - 1 of training, with batches from `batchAt(step)`.
 *
 * @throws {InvalidInputError} for a bad step range.
 */
export async function trainSteps(program: TrainProgram, o: {
  from: number;
  to: number;
  batchAt: (step: number) => Batch;
  /** Log (and check for NaN) every this many steps (default 10). */
  logEvery?: number;
  onLog?: (log: TrainLog) => void;
  /** Stop at the next log point after this many seconds (a run's time budget). */
  timeLimit?: number;
  /** Called at each log point; may save a checkpoint. */
  onCheckpoint?: (step: number) => Promise<void>;
  /** Save every this many steps (at log points). */
  checkpointEvery?: number;
}): Promise<TrainResult> {
  if (!Number.isInteger(o.from) || !Number.isInteger(o.to) || o.from < 0 || o.to < o.from) {
    throw new InvalidInputError(
      `steps must run from an integer >= 0 to one >= it, got ${o.from}..${o.to}`,
    );
  }
  const gpu = program.model.gpu;
  const dev = gpu.device;
  const nh = program.model.config.nFuture;
  const logEvery = o.logEvery ?? 10;
  const arena = gpu.arena("training log");
  // [logEvery, nh] losses of the steps since the last log, then the optimizer state.
  const lossLog = arena.storage("loss log", logEvery * nh * 4);
  const bytes = logEvery * nh * 4 + OPT.WORDS * 4;
  const slots = [0, 1].map(() =>
    arena.buffer("train readback", bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST)
  );
  let pending: { slot: GPUBuffer; step: number; steps: number; done: Promise<unknown> } | null =
    null;
  const t0 = performance.now();
  let last: TrainLog | null = null;
  let stopped: TrainResult["stopped"] = "done";
  let lastSaved = o.from;

  const read = async (p: NonNullable<typeof pending>): Promise<TrainLog | null> => {
    const r = await p.done;
    if (r instanceof Error) throw new GpuError(`reading the training log failed: ${r.message}`);
    const data = p.slot.getMappedRange().slice(0);
    p.slot.unmap();
    const losses = new Float32Array(data, 0, logEvery * nh);
    const status = optimizerStatus(new Uint32Array(data, logEvery * nh * 4, OPT.WORDS));
    if (status.skipped > 0) return null;
    const mean = Array.from({ length: nh }, (_, j) => {
      let s = 0;
      for (let i = 0; i < p.steps; i++) s += losses[i * nh + j];
      return s / p.steps / program.rows;
    });
    const seconds = (performance.now() - t0) / 1000;
    return {
      step: p.step,
      losses: mean,
      lr: status.lr,
      gradNorm: status.gradNorm,
      tokensPerSecond: ((p.step - o.from) * program.rows) / seconds,
      seconds,
    };
  };

  try {
    let step = o.from;
    let since = 0;
    let logs = 0;
    while (step < o.to) {
      upload(program, o.batchAt(step));
      const enc = dev.createCommandEncoder();
      for (const b of program.gradBuffers) enc.clearBuffer(b);
      const pass = enc.beginComputePass();
      encode(pass, program.step);
      pass.end();
      enc.copyBufferToBuffer(program.losses.buffer, 0, lossLog, since * nh * 4, nh * 4);
      step++;
      since++;
      const logNow = since === logEvery || step === o.to;
      let slot: GPUBuffer | null = null;
      if (logNow) {
        slot = slots[logs++ % 2];
        enc.copyBufferToBuffer(lossLog, 0, slot, 0, logEvery * nh * 4);
        enc.copyBufferToBuffer(program.optState.buffer, 0, slot, logEvery * nh * 4, OPT.WORDS * 4);
      }
      dev.queue.submit([enc.finish()]);
      if (!logNow) continue;
      // The map of this log point is asked for now (it resolves once the GPU gets there); the
      // previous one is read now, one log point behind.
      const next = {
        slot: slot!,
        step,
        steps: since,
        done: slot!.mapAsync(GPUMapMode.READ).then(() => null, (e) => e as Error),
      };
      since = 0;
      const due = !!o.checkpointEvery && step - lastSaved >= o.checkpointEvery && step < o.to;
      // A checkpoint saves only state whose log was read (no NaN before it): read this one now.
      const toRead = due ? [pending, next] : [pending];
      pending = due ? null : next;
      let nan = false;
      for (const p of toRead) {
        if (!p) continue;
        const log = await read(p);
        if (log === null) nan = true;
        else {
          last = log;
          o.onLog?.(log);
        }
      }
      if (nan) {
        stopped = "nan";
        break;
      }
      gpu.check("training");
      if (due) {
        await o.onCheckpoint?.(step);
        lastSaved = step;
      }
      if (o.timeLimit !== undefined && (performance.now() - t0) / 1000 > o.timeLimit) {
        stopped = "time";
        break;
      }
    }
    if (pending) {
      const log = await read(pending);
      pending = null;
      if (log === null) stopped = "nan";
      else {
        last = log;
        o.onLog?.(log);
      }
    }
    if (stopped !== "nan") await o.onCheckpoint?.(last?.step ?? o.to);
    return { step: last?.step ?? o.from, stopped, last };
  } finally {
    if (pending) await pending.done;
    arena.dispose();
  }
}
