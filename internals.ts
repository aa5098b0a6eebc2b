/**
 * Building blocks under the stable API, for advanced use: the device and its arenas, kernel
 * launches and their CPU references, the trunk's launch lists, head kinds, the decode session
 * and the draft-source plumbing.
 *
 * @experimental These change between minor versions; the root export (`@ahead/mtp`) does not.
 * @module
 */
export { Arena, type DType, numel, type Tensor } from "./gpu/arena.ts";
export { createGpu, Gpu, type GpuOptions, type Limits } from "./gpu/device.ts";
export {
  type Access,
  type Bound,
  type Dispatch,
  encode,
  KERNEL_LIMITS,
  type KernelCall,
  makeDispatch,
  type Matrix,
  type MatrixPart,
  run,
  type WeightDType,
} from "./kernels/dispatch.ts";
export { MAX_STOP_IDS, NO_TOKEN, S, STATE_WGSL, type StateLayout } from "./kernels/state.ts";
export { add } from "./kernels/add.ts";
export { argmax } from "./kernels/argmax.ts";
export { attention, attentionSplits } from "./kernels/attention.ts";
export { embed } from "./kernels/embed.ts";
export { gatherRows, type GpuIndex } from "./kernels/gather_rows.ts";
export { scatterRows } from "./kernels/scatter_rows.ts";
export { mtpConcat } from "./kernels/mtp_concat.ts";
export { mtpRows } from "./kernels/mtp_rows.ts";
export { columns } from "./kernels/columns.ts";
export { gemv, GEMV_MAX_ROWS, threadsPerRow } from "./kernels/gemv.ts";
export { matmul, matmulDw, matmulDx, type MatmulTune, type Rows } from "./kernels/matmul.ts";
export { rmsnorm } from "./kernels/rmsnorm.ts";
export { type AttentionShape, ropeKv, type RopeScaling, ropeTable } from "./kernels/rope_kv.ts";
export { qkNorm } from "./kernels/qk_norm.ts";
export { swiglu } from "./kernels/swiglu.ts";
export * as reference from "./kernels/reference.ts";
export { parseConfigFields } from "./model/config.ts";
export {
  allocKv,
  allocScratch,
  type ForwardContext,
  type KvCache,
  layer,
  normLinear,
  project,
  type Scratch,
  trunk,
  unembed,
} from "./model/trunk.ts";
export {
  layerTensorShapes,
  type LayerWeights,
  type Placement,
  randomTensors,
  type Segment,
  trunkTensorShapes,
  type TrunkWeights,
  uploadTensor,
  WeightAllocator,
} from "./model/weights.ts";
export { get, layerRef, type Tensors, trunkRef, unembedRef } from "./model/reference.ts";
export type { Block, HeadKind, HeadRun, LogitsView } from "./heads/kind.ts";
export { HEAD_KINDS, headKind } from "./heads/registry.ts";
export { transformerHeads } from "./heads/transformer.ts";
export { medusaHeads, type MedusaWeights } from "./heads/medusa.ts";
export { type MtpModule, type MtpNames, mtpNames, sequentialHeads } from "./heads/sequential.ts";
export { PREFILL_CHUNK } from "./heads/model.ts";
export { referenceForward, referenceGreedy } from "./heads/reference.ts";
export {
  type Checkpoint,
  decodeToF16Bits,
  decodeToF32,
  type Dtype,
  dtypeSize,
  openCheckpoint,
  type OpenOptions,
  openSafetensors,
  type TensorInfo,
  type TensorSource,
  type TensorToWrite,
  type WritableDtype,
  writeSafetensors,
} from "./io/safetensors.ts";
export { checkIds, readTokenizerConfig, type TokenizerConfig } from "./io/tokenizer.ts";
export {
  type HfConfigInfo,
  type HfConfigOptions,
  readHfConfig,
  SUPPORTED_MODEL_TYPES,
  writeHfConfig,
} from "./io/hf_config.ts";
export { type Readback, Session, type Snapshot } from "./decode/session.ts";
export { Batches, MAP_LAG, MIN_BATCH_STEPS } from "./decode/readback.ts";
export { generationStats } from "./decode/stats.ts";
export type { AttachedDrafts, DraftHost } from "./decode/drafts.ts";
export { verify } from "./decode/verify.ts";
export { replay } from "./decode/replay.ts";
export { replayRef, verifyRef } from "./decode/reference.ts";
