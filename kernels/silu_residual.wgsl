// out[r, i] = res[r, i] + silu(x[r * stride + offset + i]), for r < rows, i < n: Medusa's
// ResBlock, v = u + silu(W u + b), on one head's columns of the stacked pre-activations.
// sigma is formed from exp(-|x|), which never overflows.
struct Params { rows: u32, n: u32, stride: u32, offset: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [rows, stride]
@group(0) @binding(3) var<storage, read> res: array<f32>;       // [rows, n]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [rows, n]
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (done[0] != 0u) { return; }
  let i = gid.x;
  let r = gid.y + gid.z * nwg.y;
  if (i >= P.n || r >= P.rows) { return; }
  let v = x[r * P.stride + P.offset + i];
  let e = exp(-abs(v));
  let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
  out[r * P.n + i] = res[r * P.n + i] + v * sig;
}
