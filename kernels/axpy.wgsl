// y[i] += a x[i]: gradient accumulation (a residual add's backward is the identity, so its
// gradient is added into the branch's; several heads add into one trunk gradient).
struct Params { n: u32, a: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;    // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;       // [n]
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // [n]
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let i = (wid.x + wid.y * nwg.x) * WG + li;
  if (i < P.n) { y[i] += bitcast<f32>(P.a) * x[i]; }
}
