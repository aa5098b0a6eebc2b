// Per-head RMSNorm of the query and key parts of fused qkv rows, in place (Qwen3's q_norm and
// k_norm, before RoPE): each head vector v of width headDim becomes v / rms(v) * g, with g the
// query weight for query heads and the key weight for key heads; values are left alone. One
// workgroup per (head, row), so a row's bits do not depend on the block size.
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, eps: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> g: array<f32>;          // [2, headDim]: q_norm, k_norm
@group(0) @binding(3) var<storage, read_write> qkv: array<f32>;  // [rows, (nHeads + 2 nKvHeads) headDim]
const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let head = wid.x;  // query heads first, then key heads
  let r = wid.y;
  let base = (r * (P.nHeads + 2u * P.nKvHeads) + head) * P.headDim;
  var gBase = 0u;
  if (head >= P.nHeads) { gBase = P.headDim; }
  var s = 0.0;
  for (var e = li; e < P.headDim; e += WG) { let v = qkv[base + e]; s += v * v; }
  partial[li] = s;
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o) { partial[li] += partial[li + o]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0] / f32(P.headDim) + bitcast<f32>(P.eps));
  for (var e = li; e < P.headDim; e += WG) { qkv[base + e] = qkv[base + e] * scale * g[gBase + e]; }
}
