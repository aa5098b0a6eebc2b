// Column window: out[r, c] = x[r, offset + c] for c < n, x's rows `stride` apart (one half of a
// concatenation, e.g. the gradient of a sequential MTP module's [hidden ; token] input).
struct Params { rows: u32, n: u32, stride: u32, offset: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [rows, stride]
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [rows, n]

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let c = gid.x;
  let r = gid.y + gid.z * 65535u;
  if (c < P.n && r < P.rows) { out[r * P.n + c] = x[r * P.stride + P.offset + c]; }
}
