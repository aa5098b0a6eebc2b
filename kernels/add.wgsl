// Residual add: out[i] = a[i] + b[i].
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> a: array<f32>;         // [n]
@group(0) @binding(3) var<storage, read> b: array<f32>;         // [n]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [n]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let i = (wid.x + wid.y * nwg.x) * 256u + li;
  if (i < P.n) { out[i] = a[i] + b[i]; }
}
