// Backward of swiglu.wgsl, out = silu(g) u with g, u = gu[r, n], gu[r, N + n]:
//   dg = dout u silu'(g),  silu'(g) = sigma(g) (1 + g (1 - sigma(g)))
//   du = dout silu(g)
// sigma is formed from exp(-|g|), which never overflows, so large gates of either sign give
// finite gradients (WGSL lets implementations assume no infinities).
struct Params { rows: u32, n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> gu: array<f32>;        // [rows, 2N] the forward's input
@group(0) @binding(3) var<storage, read> dout: array<f32>;      // [rows, N]
@group(0) @binding(4) var<storage, read_write> dgu: array<f32>; // [rows, 2N]
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (done[0] != 0u) { return; }
  let i = gid.x;
  let r = gid.y + gid.z * nwg.y;
  if (i >= P.n || r >= P.rows) { return; }
  let at = r * 2u * P.n + i;
  let g = gu[at];
  let u = gu[at + P.n];
  let d = dout[r * P.n + i];
  let e = exp(-abs(g));
  let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), g >= 0.0);
  dgu[at] = d * u * sig * (1.0 + g * (1.0 - sig));
  dgu[at + P.n] = d * g * sig;
}
