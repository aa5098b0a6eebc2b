// Backward of qk_norm.wgsl (per-head RMSNorm of the query and key heads of fused qkv rows), for
// the inputs, in place on the gradient: each query or key head's slice dy of dqkv becomes
//   dx = s g dy - x s^3 / headDim * sum(g dy x),   s = 1/sqrt(mean(x^2) + eps)
// with x the head's values before the norm and g the query or key weight. Value heads pass
// through untouched. In place is safe within a launch: a thread reads the dy it overwrites, and
// the reduction that reads all of dy ends at a barrier before any write. The weight gradient
// (norm_weight_backward.wgsl) needs the dy this overwrites and each head's s, so the launcher
// runs this kernel twice: with DX false it only writes s into rstd, the weight gradient reads
// rstd and dy, then with DX true it writes dx. One workgroup per (head, row).
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, eps: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> g: array<f32>;          // [2, headDim]: q_norm, k_norm
@group(0) @binding(3) var<storage, read> x: array<f32>;          // [rows, (nHeads + 2 nKvHeads) headDim] before the norm
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>; // same layout: dy in, dx out
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>; // [rows, nHeads + nKvHeads]
override WG: u32 = 64u; // a power of two
override DX: bool = true;
var<workgroup> partial: array<vec2f, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let head = wid.x;  // query heads first, then key heads
  let r = wid.y + wid.z * nwg.y;
  if (r >= P.rows) { return; }
  let base = (r * (P.nHeads + 2u * P.nKvHeads) + head) * P.headDim;
  var gBase = 0u;
  if (head >= P.nHeads) { gBase = P.headDim; }
  var s = vec2f(0.0);
  for (var e = li; e < P.headDim; e += WG) {
    let v = x[base + e];
    s += vec2f(v * v, g[gBase + e] * dqkv[base + e] * v);
  }
  partial[li] = s;
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o) { partial[li] += partial[li + o]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0].x / f32(P.headDim) + bitcast<f32>(P.eps));
  if (!DX) {
    if (li == 0u) { rstd[r * (P.nHeads + P.nKvHeads) + head] = scale; }
    return;
  }
  let coef = scale * scale * scale * partial[0].y / f32(P.headDim);
  for (var e = li; e < P.headDim; e += WG) {
    dqkv[base + e] = scale * g[gBase + e] * dqkv[base + e] - coef * x[base + e];
  }
}
