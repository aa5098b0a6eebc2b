// Decode attention, phase 2 of 2: merges the chunks of attention_split.wgsl for one (head, row):
// out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c, over the chunks that hold positions.
struct Params { rows: u32, nHeads: u32, headDim: u32, capacity: u32, splits: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> part: array<f32>;       // [rows, nHeads, splits, 2 + headDim]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [rows, nHeads headDim]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let h = wid.x;
  let r = wid.y;
  let hd = P.headDim;
  let len = min(state[S_POS] + r + 1u, P.capacity);
  let chunk = (len + P.splits - 1u) / P.splits;
  let nChunks = (len + chunk - 1u) / chunk;
  let base = (r * P.nHeads + h) * P.splits;
  var mMax = -3.0e38;
  for (var c = 0u; c < nChunks; c++) { mMax = max(mMax, part[(base + c) * (2u + hd)]); }
  var l = 0.0;
  for (var c = 0u; c < nChunks; c++) {
    let b = (base + c) * (2u + hd);
    l += exp(part[b] - mMax) * part[b + 1u];
  }
  for (var d = li; d < hd; d += 64u) {
    var acc = 0.0;
    for (var c = 0u; c < nChunks; c++) {
      let b = (base + c) * (2u + hd);
      acc += exp(part[b] - mMax) * part[b + 2u + d];
    }
    out[(r * P.nHeads + h) * hd + d] = acc / l;
  }
}
