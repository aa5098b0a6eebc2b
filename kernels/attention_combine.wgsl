// Attention, phase 2 of 2: merges the chunks of attention.wgsl for one (head, row):
// out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c, over the chunks that hold positions.
struct Params { rows: u32, nHeads: u32, headDim: u32, capacity: u32, splits: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> positions: array<u32>;  // [rows]
@group(0) @binding(3) var<storage, read> part: array<f32>;       // [rows, nHeads, splits, 2 + headDim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // [rows, nHeads headDim]
var<workgroup> weight: array<f32, 32>;  // exp(m_c - M) per chunk (splits <= 32)
var<workgroup> ms: array<f32, 32>;
var<workgroup> ls: array<f32, 32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let h = wid.x;
  let r = wid.y;
  let hd = P.headDim;
  let len = min(positions[r] + 1u, P.capacity);
  let chunk = max(16u, (len + P.splits - 1u) / P.splits);
  let nChunks = (len + chunk - 1u) / chunk;
  let base = (r * P.nHeads + h) * P.splits;
  // Each chunk's max and sum are loaded once, in parallel.
  if (li < nChunks) {
    ms[li] = part[(base + li) * (2u + hd)];
    ls[li] = part[(base + li) * (2u + hd) + 1u];
  }
  workgroupBarrier();
  var mMax = -3.0e38;
  for (var c = 0u; c < nChunks; c++) { mMax = max(mMax, ms[c]); }
  var l = 0.0;
  for (var c = 0u; c < nChunks; c++) { l += exp(ms[c] - mMax) * ls[c]; }
  if (li < nChunks) { weight[li] = exp(ms[li] - mMax) / l; }
  workgroupBarrier();
  for (var d = li; d < hd; d += 64u) {
    var acc = 0.0;
    for (var c = 0u; c < nChunks; c++) { acc += weight[c] * part[(base + c) * (2u + hd) + 2u + d]; }
    out[(r * P.nHeads + h) * hd + d] = acc;
  }
}
