// Tiled matrix product for prefill and full forwards, over one part of W (see gemv.wgsl):
// y[m, outOffset + n] = x[m, :] . W[n, :] (+ b[outOffset + n] with BIAS) for m < M, n < N, W
// starting wOffset elements into w. Row m of x starts at xOffset + m xStride, row m of y at
// yOffset + m outStride, so x and y may be rows of wider tensors (one head's slice of a block).
// 64x64 output tile per workgroup, 16-deep K tiles staged in workgroup memory, 4x4 outputs per thread.
struct Params {
  m: u32, n: u32, k: u32, outOffset: u32, outStride: u32, wOffset: u32,
  xOffset: u32, xStride: u32, yOffset: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;        // [xOffset + M xStride]
@group(0) @binding(3) var<storage, read> w: array<u32>;        // [wOffset + N K] (this part): f32 bits or f16 pairs
@group(0) @binding(4) var<storage, read> b: array<f32>;        // [outOffset + N] (BIAS)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // [yOffset + M outStride]
override F16: bool = false;
override BIAS: bool = false;
const TILE: u32 = 64u;
const KT: u32 = 16u;
var<workgroup> xs: array<f32, 1024>;  // [KT][TILE]
var<workgroup> ws: array<f32, 1024>;  // [KT][TILE]

fn weight(n: u32, k: u32) -> f32 {
  let i = P.wOffset + n * P.k + k;
  if (F16) { return unpack2x16float(w[i >> 1u])[i & 1u]; }
  return bitcast<f32>(w[i]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let m0 = wid.y * TILE;
  let n0 = wid.x * TILE;
  let tx = li % 16u;
  let ty = li / 16u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < P.k; k0 += KT) {
    for (var j = 0u; j < 4u; j++) {
      let e = li + j * 256u;   // element of the [TILE][KT] tile
      let row = e / KT;
      let kk = e % KT;
      var xv = 0.0;
      if (m0 + row < P.m && k0 + kk < P.k) { xv = x[P.xOffset + (m0 + row) * P.xStride + k0 + kk]; }
      xs[kk * TILE + row] = xv;
      var wv = 0.0;
      if (n0 + row < P.n && k0 + kk < P.k) { wv = weight(n0 + row, k0 + kk); }
      ws[kk * TILE + row] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < KT; kk++) {
      for (var i = 0u; i < 4u; i++) {
        let xv = xs[kk * TILE + ty * 4u + i];
        for (var j = 0u; j < 4u; j++) { acc[i][j] += xv * ws[kk * TILE + tx * 4u + j]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      let m = m0 + ty * 4u + i;
      let n = n0 + tx * 4u + j;
      if (m < P.m && n < P.n) {
        var v = acc[i][j];
        if (BIAS) { v += b[P.outOffset + n]; }
        y[P.yOffset + m * P.outStride + P.outOffset + n] = v;
      }
    }
  }
}
