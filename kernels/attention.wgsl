// Attention, phase 1 of 2 (flash-decoding): causal grouped-query attention of a block of query
// rows, each split over up to `splits` chunks of positions, so that short blocks (decode, verify)
// still fill the GPU; long blocks (prefill) use one chunk per row. A row attending to
// len = positions[row] + 1 positions uses chunks of C = max(16, ceil(len / splits));
// workgroup (head, row, chunk) covers [chunk * C, min((chunk + 1) * C, len)) and writes its
// running max m, sum l and unnormalised output acc; attention_combine.wgsl merges the chunks.
// The chunking depends on len only, so a position gets the same bits in any block.
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, capacity: u32, scale: u32, splits: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> positions: array<u32>;  // [rows]
@group(0) @binding(3) var<storage, read> qkv: array<f32>;       // [rows, (nHeads + 2 nKvHeads) headDim]; q first
@group(0) @binding(4) var<storage, read> kCache: array<vec4f>;  // [capacity, nKvHeads, headDim]
@group(0) @binding(5) var<storage, read> vCache: array<f32>;    // [capacity, nKvHeads, headDim]
@group(0) @binding(6) var<storage, read_write> part: array<f32>; // [rows, nHeads, splits, 2 + headDim]: m, l, acc
const T: u32 = 64u;
var<workgroup> q: array<vec4f, 64>;
var<workgroup> scores: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let h = wid.x;
  let r = wid.y;
  let s = wid.z;
  let hd = P.headDim;
  let hd4 = hd / 4u;
  let len = min(positions[r] + 1u, P.capacity);
  let chunk = max(16u, (len + P.splits - 1u) / P.splits);
  let start = s * chunk;
  if (start >= len) { return; }
  let end = min(start + chunk, len);
  let kvh = h / (P.nHeads / P.nKvHeads);
  let qRow = r * (P.nHeads + 2u * P.nKvHeads) * hd + h * hd;
  if (li < hd4) {
    q[li] = vec4f(qkv[qRow + 4u * li], qkv[qRow + 4u * li + 1u], qkv[qRow + 4u * li + 2u],
                  qkv[qRow + 4u * li + 3u]);
  }
  workgroupBarrier();
  let scale = bitcast<f32>(P.scale);
  var m = -3.0e38;
  var l = 0.0;
  var acc = vec4f(0.0);  // dims li, li + 64, li + 128, li + 192
  for (var t0 = start; t0 < end; t0 += T) {
    let t = t0 + li;
    var sc = -3.0e38;
    if (t < end) {
      let kb = (t * P.nKvHeads + kvh) * hd4;
      var dotv = 0.0;
      for (var d = 0u; d < hd4; d++) { dotv += dot(q[d], kCache[kb + d]); }
      sc = dotv * scale;
    }
    scores[li] = sc;
    workgroupBarrier();
    let n = min(T, end - t0);
    var mt = m;
    for (var j = 0u; j < n; j++) { mt = max(mt, scores[j]); }
    let corr = exp(m - mt);
    l *= corr;
    acc *= corr;
    // Positions in fours: the four V loads of a dim are independent, so they overlap.
    var j = 0u;
    for (; j + 4u <= n; j += 4u) {
      let p = vec4f(exp(scores[j] - mt), exp(scores[j + 1u] - mt), exp(scores[j + 2u] - mt),
                    exp(scores[j + 3u] - mt));
      l += p.x + p.y + p.z + p.w;
      let vb = (t0 + j) * P.nKvHeads * hd + kvh * hd;
      let step = P.nKvHeads * hd;
      for (var c = 0u; c < 4u; c++) {
        let d = li + c * T;
        if (d < hd) {
          let v = vec4f(vCache[vb + d], vCache[vb + step + d], vCache[vb + 2u * step + d],
                        vCache[vb + 3u * step + d]);
          acc[c] += dot(p, v);
        }
      }
    }
    for (; j < n; j++) {
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
  let base = ((r * P.nHeads + h) * P.splits + s) * (2u + hd);
  if (li == 0u) { part[base] = m; part[base + 1u] = l; }
  for (var c = 0u; c < 4u; c++) {
    let d = li + c * T;
    if (d < hd) { part[base + 2u + d] = acc[c]; }
  }
}
