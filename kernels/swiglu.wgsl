// SwiGLU: out[r, n] = silu(gu[r, n]) * gu[r, N + n], where gu = x . [gate; up]^T.
struct Params { rows: u32, n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> gu: array<f32>;        // [rows, 2N]
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [rows, N]

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let i = gid.x;
  let r = gid.y;
  if (i >= P.n || r >= P.rows) { return; }
  let g = gu[r * 2u * P.n + i];
  let u = gu[r * 2u * P.n + P.n + i];
  out[r * P.n + i] = g / (1.0 + exp(-g)) * u;
}
