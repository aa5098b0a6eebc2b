// Global gradient norm, pass 2 of 2: norm[0] = sqrt(sum of the partial sums of squares), in one
// workgroup and a fixed order. A NaN or an infinity in any gradient makes the norm NaN or
// infinite, which the optimizer's schedule kernel (adamw_schedule.wgsl) takes as "skip".
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;        // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> partial: array<f32>;     // [count]
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;  // [1]
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  var s = 0.0;
  for (var i = li; i < P.count; i += 256u) { s += partial[i]; }
  red[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] += red[li + w]; }
    workgroupBarrier();
  }
  if (li == 0u) { norm[0] = sqrt(red[0]); }
}
