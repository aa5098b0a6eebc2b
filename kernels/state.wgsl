// Layout of the `state` buffer (u32 words) that every kernel reads: the decode loop lives on the
// GPU, so the position, the stop condition and the counters are here, not on the host.
// Mirrored in decode/state.ts.
const S_POS: u32 = 0u;        // position of row 0 of the current block
const S_LEN: u32 = 1u;        // tokens in the sequence: prompt + generated
const S_GENERATED: u32 = 2u;  // tokens emitted after the prompt
const S_DONE: u32 = 3u;       // 1 once a stop condition hit: every later kernel returns at once
const S_STEPS: u32 = 4u;      // decode steps (forward passes after the prompt) that ran
const S_HEAD_ROW: u32 = 5u;   // block row whose hidden state the draft heads read
const S_LIMIT: u32 = 6u;      // stop when S_LEN reaches this (prompt + maxTokens, <= maxSeqLen)
const S_NSTOP: u32 = 7u;      // number of stop token ids at S_STOP
const S_ACCEPTED: u32 = 16u;  // [16] per draft slot: drafts accepted
const S_PROPOSED: u32 = 32u;  // [16] per draft slot: drafts proposed
const S_STOP: u32 = 48u;      // [64] stop token ids
const NO_TOKEN: u32 = 0xffffffffu;  // an empty draft slot: never matches, embeds as zeros
