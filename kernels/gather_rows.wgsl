// Row gather: out[outRow, :] = x[index[at] + add, :]. The row index is read on the GPU (the decode
// loop passes the verifier's choice of row, or a position), so no host round trip picks it.
struct Params { dim: u32, outRow: u32, at: u32, add: i32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> index: array<u32>;     // [at + 1]
@group(0) @binding(3) var<storage, read> x: array<f32>;         // [rows, dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [outRow + 1, dim]

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let e = gid.x;
  if (e < P.dim) { out[P.outRow * P.dim + e] = x[u32(i32(index[P.at]) + P.add) * P.dim + e]; }
}
