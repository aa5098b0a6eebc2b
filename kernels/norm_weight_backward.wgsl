// RMSNorm weight gradient, pass 1 of 2: partial[b, c] = sum over the vectors v of block b of
// dy[v, c] x[v, c] rstd[v]. No float atomics exist in WGSL, so the sum over rows is split into
// fixed blocks of vectors, each summed by one workgroup in a fixed order, and sum_rows.wgsl adds
// the blocks up in order: the bits depend only on the shapes, never on scheduling.
// A "vector" is one normalised slice of width dim: a whole row for rmsnorm, one query or key head
// of a fused qkv row for qk_norm. Vector v is head h = v % perRow of row r = v / perRow, at
// r xStride + xOffset + h dim in x and dy, its rstd at r sStride + sOffset + h.
struct Params {
  nVec: u32, perRow: u32, dim: u32, xStride: u32, xOffset: u32, sStride: u32, sOffset: u32,
  perBlock: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;          // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;             // the forward's input, strided
@group(0) @binding(3) var<storage, read> dy: array<f32>;            // same layout as x
@group(0) @binding(4) var<storage, read> rstd: array<f32>;          // 1/rms of each vector
@group(0) @binding(5) var<storage, read_write> partial: array<f32>; // [blocks, dim]
override WX: u32 = 64u; // columns per workgroup (consecutive threads read consecutive floats)
override WY: u32 = 4u;  // vectors in flight per column; a power of two
var<workgroup> acc: array<f32, WX * WY>;

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  if (done[0] != 0u) { return; }
  let c = wid.x * WX + lid.x;
  let block = wid.y;
  let v1 = min((block + 1u) * P.perBlock, P.nVec);
  var s = 0.0;
  if (c < P.dim) {
    for (var v = block * P.perBlock + lid.y; v < v1; v += WY) {
      let r = v / P.perRow;
      let h = v % P.perRow;
      let i = r * P.xStride + P.xOffset + h * P.dim + c;
      s += dy[i] * x[i] * rstd[r * P.sStride + P.sOffset + h];
    }
  }
  acc[lid.y * WX + lid.x] = s;
  workgroupBarrier();
  for (var o = WY / 2u; o > 0u; o >>= 1u) {
    if (lid.y < o) { acc[lid.y * WX + lid.x] += acc[(lid.y + o) * WX + lid.x]; }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < P.dim) { partial[block * P.dim + c] = acc[lid.x]; }
}
