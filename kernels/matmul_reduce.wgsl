// The second half of a split-K matmul.wgsl launch: for i < M, j < N,
//   C[i, j] = part[0, i, j] + part[1, i, j] + ... (the splits' partial sums, added in order)
//   c[cOff + i cStride + col(j)] = C[i, j] (+ bias[col(j)] with BIAS) (+ its old value with ACC)
// with col(j) as in matmul.wgsl (GATED: the gate columns, then the up columns). One thread per 4
// consecutive columns; partial rows are padded to 4 n4 columns.
struct Params {
  m: u32, n: u32, splits: u32, n4: u32, cOff: u32, cStride: u32, colOff: u32, half: u32,
  upOff: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> part: array<vec4f>;   // [splits, M, n4]
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [col(N)] (BIAS)
@group(0) @binding(4) var<storage, read_write> c: array<f32>;  // [cOff + M cStride]
override BIAS: bool = false;
override ACC: bool = false;
override GATED: bool = false;

fn col(j: u32) -> u32 {
  if (GATED && j >= P.half) { return P.upOff + j - P.half; }
  return P.colOff + j;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let t = (wid.x + wid.y * nwg.x) * 256u + li;
  let i = t / P.n4;
  let jq = t % P.n4;
  if (i >= P.m) { return; }
  var v = part[i * P.n4 + jq];
  for (var z = 1u; z < P.splits; z++) { v += part[(z * P.m + i) * P.n4 + jq]; }
  for (var q = 0u; q < 4u; q++) {
    let j = 4u * jq + q;
    if (j < P.n) {
      let cj = col(j);
      let e = P.cOff + i * P.cStride + cj;
      var o = v[q];
      if (BIAS) { o += bias[cj]; }
      if (ACC) { o += c[e]; }
      c[e] = o;
    }
  }
}
