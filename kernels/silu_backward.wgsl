// Backward of silu_residual.wgsl's silu, for x = x[r * stride + offset + i]:
//   dx[r * stride + offset + i] = dy[r, i] silu'(x),  silu'(x) = sigma(x) (1 + x (1 - sigma(x)))
// (the residual's gradient, dy itself, is the caller's to add). Writes only this head's
// columns of dx, so the heads fill one stacked gradient in turn.
struct Params { rows: u32, n: u32, stride: u32, offset: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;        // [rows, stride]
@group(0) @binding(3) var<storage, read> dy: array<f32>;       // [rows, n]
@group(0) @binding(4) var<storage, read_write> dx: array<f32>; // [rows, stride]
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (done[0] != 0u) { return; }
  let i = gid.x;
  let r = gid.y + gid.z * nwg.y;
  if (i >= P.n || r >= P.rows) { return; }
  let at = r * P.stride + P.offset + i;
  let v = x[at];
  let e = exp(-abs(v));
  let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
  dx[at] = dy[r * P.n + i] * sig * (1.0 + v * (1.0 - sig));
}
