// Column sums: out[outOffset + c] (+)= scale * sum_r x[r, c], summed in a fixed order (strided
// over WY lanes, then a tree), so the same input gives the same bits every run. It finishes the
// two-pass reductions (weight gradients from per-block partials), gives bias gradients, and with
// WX = 1, WY = 256 sums a vector (per-row losses into one value the host reads back).
struct Params { rows: u32, cols: u32, outOffset: u32, scale: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [rows, cols]
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [outOffset + cols]
override WX: u32 = 64u; // columns per workgroup
override WY: u32 = 4u;  // lanes splitting the rows of a column; a power of two
override ACCUMULATE: bool = false;
var<workgroup> acc: array<f32, WX * WY>;

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid: vec3u) {
  if (done[0] != 0u) { return; }
  let c = (wid.x + wid.y * nwg.x) * WX + lid.x;
  var s = 0.0;
  if (c < P.cols) {
    for (var r = lid.y; r < P.rows; r += WY) { s += x[r * P.cols + c]; }
  }
  acc[lid.y * WX + lid.x] = s;
  workgroupBarrier();
  for (var o = WY / 2u; o > 0u; o >>= 1u) {
    if (lid.y < o) { acc[lid.y * WX + lid.x] += acc[(lid.y + o) * WX + lid.x]; }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < P.cols) {
    var v = acc[lid.x] * bitcast<f32>(P.scale);
    if (ACCUMULATE) { v += out[P.outOffset + c]; }
    out[P.outOffset + c] = v;
  }
}
