// Row scatter: out[pos[r], :] = x[r, :] for r < rows, the positions read on the GPU (a sequential
// MTP module keeps its outputs by position, for the next module and the next draft).
struct Params { rows: u32, dim: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> pos: array<u32>;       // [rows]
@group(0) @binding(3) var<storage, read> x: array<f32>;         // [rows, dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [capacity, dim]

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let e = gid.x;
  let r = gid.y;
  if (e < P.dim && r < P.rows) { out[pos[r] * P.dim + e] = x[r * P.dim + e]; }
}
