/**
 * Layout of the GPU `state` buffer (u32 words), mirrored from kernels/state.wgsl.
 * @module
 */
import { MAX_FUTURE } from "../model/config.ts";

/** Word offsets into the state buffer. */
export const S = {
  POS: 0,
  LEN: 1,
  GENERATED: 2,
  DONE: 3,
  STEPS: 4,
  HEAD_ROW: 5,
  LIMIT: 6,
  NSTOP: 7,
  ACCEPTED: 16,
  PROPOSED: 32,
  STOP: 48,
} as const;

/** Most stop token ids a generation can have. */
export const MAX_STOP_IDS = 64;
/** Size of the state buffer in u32 words. */
export const STATE_WORDS = S.STOP + MAX_STOP_IDS;
/** An empty draft slot: never matches a token, embeds as zeros. */
export const NO_TOKEN = 0xffffffff;

if (MAX_FUTURE > S.PROPOSED - S.ACCEPTED) throw new Error("state layout too small for MAX_FUTURE");
