/**
 * The host side of the decode loop: batches of steps submitted ahead, and a ring of readback
 * buffers mapped asynchronously, read one batch behind, so that no map waits on the per-step
 * critical path.
 * @module
 */
import type { Readback, Session, Snapshot } from "./session.ts";

/**
 * Batches mapped but not yet read. A map resolves ~10 ms after it is called, so the host reads
 * one batch behind while the GPU runs the next.
 */
export const MAP_LAG = 2;
/** Fewest decode steps per submitted batch: at most one host sync per this many steps. */
export const MIN_BATCH_STEPS = 4;
const MAX_BATCH_STEPS = 64;
/**
 * GPU time a batch should take: the host learns of the end at most about one batch late (the
 * steps past the end exit at once on the done flag), and a batch must outlast a map (>= 10 ms)
 * or the GPU waits for the host.
 */
const BATCH_TARGET_MS = 25;

interface Batch {
  slot: Readback;
  steps: number;
  cb: GPUCommandBuffer;
}

/**
 * Submits batches of decode steps and hands back their snapshots in order. The pattern that
 * keeps the GPU busy: batch k+1 is already encoded when the map of batch k is requested (which
 * returns once the GPU is idle, i.e. once batch k ran), is submitted at once, and batch k+2 is
 * encoded while the GPU runs k+1.
 */
export class Batches {
  /** Host-GPU synchronisations so far (one map per batch). */
  hostSyncs = 0;
  readonly #session: Session;
  readonly #ring: Readback[];
  readonly #alive: () => void;
  readonly #mapping: { slot: Readback; done: Promise<unknown> }[] = [];
  #inflight: Batch | null;
  #ready: Batch | null;
  #stepsLeft: number;
  #batchSteps = MIN_BATCH_STEPS;
  #msPerStep = Infinity;
  #index = 0;
  #stopped = false;

  /**
   * Starts the first batch of at most `steps` steps in all. `alive` throws when the generation
   * must not submit more work (its model was disposed).
   */
  constructor(session: Session, o: { steps: number; alive: () => void }) {
    this.#session = session;
    this.#alive = o.alive;
    this.#ring = Array.from({ length: MAP_LAG + 3 }, () => session.readback());
    this.#stepsLeft = o.steps;
    this.#inflight = this.#encode();
    this.#submit(this.#inflight!);
    this.#ready = this.#encode();
  }

  #encode(): Batch | null {
    if (this.#stepsLeft <= 0 || this.#stopped) return null;
    const steps = Math.min(this.#batchSteps, this.#stepsLeft);
    this.#stepsLeft -= steps;
    const slot = this.#ring[this.#index++ % this.#ring.length];
    return { slot, steps, cb: this.#session.encodeSteps(steps, slot) };
  }

  #submit(b: Batch): void {
    this.#alive();
    this.#session.model.gpu.device.queue.submit([b.cb]);
  }

  /**
   * Sizes later batches to about BATCH_TARGET_MS of GPU time, from the fastest time per step
   * seen. Wall time per step overstates GPU time whenever the GPU waited for the host; sizing
   * from it alone shrank the batches, which made the GPU wait longer (a loop that held a 1.1B
   * model at 1.74-1.98 ms per step against 1.41).
   */
  pace(msPerStep: number): void {
    this.#msPerStep = Math.min(this.#msPerStep, msPerStep);
    this.#batchSteps = Math.max(
      MIN_BATCH_STEPS,
      Math.min(MAX_BATCH_STEPS, Math.round(BATCH_TARGET_MS / this.#msPerStep)),
    );
  }

  /** The next batch's snapshot, in order; null once every submitted batch was read. */
  async next(): Promise<Snapshot | null> {
    for (;;) {
      if (this.#mapping.length > (this.#inflight ? MAP_LAG - 1 : 0)) {
        const m = this.#mapping.shift()!;
        const result = await m.done;
        this.#alive();
        if (result instanceof Error) throw result;
        this.#session.model.gpu.check("decode");
        return this.#session.snapshot(m.slot);
      }
      if (!this.#inflight) return null;
      const slot = this.#inflight.slot;
      // The rejection (a lost or destroyed device) is kept as a value: no promise goes unhandled.
      this.#mapping.push({
        slot,
        done: slot.buffer.mapAsync(GPUMapMode.READ).then(() => null, (e) => e as Error),
      });
      this.hostSyncs++;
      if (this.#ready && !this.#stopped) {
        this.#submit(this.#ready);
        this.#inflight = this.#ready;
        this.#ready = this.#encode();
      } else this.#inflight = null;
      this.#session.model.gpu.check("decode");
    }
  }

  /** Submits nothing more; batches already submitted are still read by {@link next}. */
  stop(): void {
    this.#stopped = true;
    this.#ready = null;
  }

  /** Waits for every outstanding map and unmaps it, so the buffers can be freed. */
  async drain(): Promise<void> {
    for (const m of this.#mapping.splice(0)) {
      if ((await m.done) === null && m.slot.buffer.mapState === "mapped") m.slot.buffer.unmap();
    }
  }
}
