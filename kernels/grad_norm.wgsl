// Global gradient norm, pass 1 of 2: sums of squares of one gradient tensor, one per workgroup
// over a fixed contiguous chunk, into partial[offset + workgroup]. The chunks and the tree in
// workgroup memory depend on the tensor's size only, so the norm has the same bits on every run.
struct Params { n: u32, chunk: u32, offset: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;           // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> g: array<f32>;              // [n]
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;  // [offset + workgroups]
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let start = wid.x * P.chunk;
  let end = min(start + P.chunk, P.n);
  var s = 0.0;
  for (var i = start + li; i < end; i += 256u) {
    let x = g[i];
    s += x * x;
  }
  red[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] += red[li + w]; }
    workgroupBarrier();
  }
  if (li == 0u) { partial[P.offset + wid.x] = red[0]; }
}
