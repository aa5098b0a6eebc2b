// Causal grouped-query attention over the KV cache for a block of query rows: row r sits at
// position state.pos + r and attends to positions 0..pos+r. Query head h reads KV head
// h / (nHeads / nKvHeads). One workgroup per (head, row); online softmax over tiles of 64 positions.
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, capacity: u32, scale: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;     // [rows, (nHeads + 2 nKvHeads) headDim]; q first
@group(0) @binding(3) var<storage, read> kCache: array<f32>;  // [capacity, nKvHeads, headDim]
@group(0) @binding(4) var<storage, read> vCache: array<f32>;  // [capacity, nKvHeads, headDim]
@group(0) @binding(5) var<storage, read_write> out: array<f32>; // [rows, nHeads headDim]
const T: u32 = 64u;
var<workgroup> q: array<f32, 256>;
var<workgroup> scores: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let h = wid.x;
  let r = wid.y;
  let hd = P.headDim;
  let kvh = h / (P.nHeads / P.nKvHeads);
  let len = min(state[S_POS] + r + 1u, P.capacity);
  let qRow = r * (P.nHeads + 2u * P.nKvHeads) * hd + h * hd;
  for (var d = li; d < hd; d += T) { q[d] = qkv[qRow + d]; }
  workgroupBarrier();
  let scale = bitcast<f32>(P.scale);
  var m = -3.0e38;
  var l = 0.0;
  var acc = vec4f(0.0);  // dims li, li + 64, li + 128, li + 192
  for (var t0 = 0u; t0 < len; t0 += T) {
    let t = t0 + li;
    var s = -3.0e38;
    if (t < len) {
      let kb = (t * P.nKvHeads + kvh) * hd;
      var dotv = 0.0;
      for (var d = 0u; d < hd; d++) { dotv += q[d] * kCache[kb + d]; }
      s = dotv * scale;
    }
    scores[li] = s;
    workgroupBarrier();
    let n = min(T, len - t0);
    var mt = m;
    for (var j = 0u; j < n; j++) { mt = max(mt, scores[j]); }
    let corr = exp(m - mt);
    l *= corr;
    acc *= corr;
    for (var j = 0u; j < n; j++) {
      let p = exp(scores[j] - mt);
      l += p;
      let vb = ((t0 + j) * P.nKvHeads + kvh) * hd;
      for (var c = 0u; c < 4u; c++) {
        let d = li + c * T;
        if (d < hd) { acc[c] += p * vCache[vb + d]; }
      }
    }
    m = mt;
    workgroupBarrier();
  }
  for (var c = 0u; c < 4u; c++) {
    let d = li + c * T;
    if (d < hd) { out[(r * P.nHeads + h) * hd + d] = acc[c] / l; }
  }
}
