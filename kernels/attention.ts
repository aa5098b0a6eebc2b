import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, f32bits, makeDispatch } from "./dispatch.ts";
import type { AttentionShape } from "./rope_kv.ts";
import code from "./attention.wgsl" with { type: "text" };

/** Causal grouped-query attention of `rows` query rows (positions state.pos + r) over the cache. */
export function attention(
  gpu: Gpu,
  o: AttentionShape & {
    state: GPUBuffer;
    qkv: GPUBuffer;
    kCache: GPUBuffer;
    vCache: GPUBuffer;
    out: GPUBuffer;
    rows: number;
    label?: string;
  },
): Dispatch {
  if (o.headDim > 256) throw new RangeError(`attention supports headDim <= 256, got ${o.headDim}`);
  return makeDispatch(gpu, {
    kernel: "attention",
    code,
    params: [
      o.rows,
      o.nHeads,
      o.nKvHeads,
      o.headDim,
      o.capacity,
      f32bits(1 / Math.sqrt(o.headDim)),
    ],
    buffers: [
      [o.state, "read"],
      [o.qkv, "read"],
      [o.kCache, "read"],
      [o.vCache, "read"],
      [o.out, "write"],
    ],
    workgroups: [o.nHeads, o.rows],
    label: o.label ?? "attention",
  });
}
