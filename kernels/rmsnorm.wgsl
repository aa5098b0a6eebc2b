// RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * g. One workgroup per row.
struct Params { rows: u32, dim: u32, eps: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [rows, dim]
@group(0) @binding(3) var<storage, read> g: array<f32>;         // [dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [rows, dim]
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let r = wid.x;
  let base = r * P.dim;
  var s = 0.0;
  for (var e = li; e < P.dim; e += 256u) { let v = x[base + e]; s += v * v; }
  partial[li] = s;
  workgroupBarrier();
  for (var o = 128u; o > 0u; o >>= 1u) {
    if (li < o) { partial[li] += partial[li + o]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0] / f32(P.dim) + bitcast<f32>(P.eps));
  for (var e = li; e < P.dim; e += 256u) { out[base + e] = x[base + e] * scale * g[e]; }
}
