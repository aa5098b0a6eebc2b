// Attention (flash-decoding, one launch): causal grouped-query attention of a block of query
// rows, each split over up to `splits` chunks of positions, so that short blocks (decode, verify)
// still fill the GPU; long blocks (prefill) use one chunk per row. A row attending to
// len = positions[row] + 1 positions uses chunks of C = max(MIN_CHUNK, ceil(len / splits));
// workgroup (head, row, chunk) covers [chunk * C, min((chunk + 1) * C, len)) and writes its
// running max m, sum l and unnormalised output acc to `part`. The last workgroup of a (head, row)
// to finish (an arrival counter, reset by that workgroup) merges the chunks:
//   out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c.
// `part` and the counters are atomics: atomic loads and stores are coherent across workgroups,
// plain loads may hit a stale cache line; the merge waits for nothing, so it also runs where
// workgroups do not run concurrently (lavapipe). The chunking depends on len only and the merge
// adds chunks in order, so a position gets the same bits in any block.
// The KV cache holds f32 values, or with KV_F16 f16 pairs (dims 2i, 2i + 1 in one word).
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, capacity: u32, scale: u32, splits: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> positions: array<u32>;  // [rows]
@group(0) @binding(3) var<storage, read> qkv: array<f32>;       // [rows, (nHeads + 2 nKvHeads) headDim]; q first
@group(0) @binding(4) var<storage, read> kCache: array<vec2<u32>>; // [capacity, nKvHeads, headDim]: 2 or 4 dims a vec2
@group(0) @binding(5) var<storage, read> vCache: array<u32>;    // [capacity, nKvHeads, headDim]: f32 bits or f16 pairs
@group(0) @binding(6) var<storage, read_write> part: array<atomic<u32>>; // [rows, nHeads, splits, 2 + headDim]: f32 m, l, acc
@group(0) @binding(7) var<storage, read_write> arrived: array<atomic<u32>>; // [rows, nHeads]: 0 between launches
@group(0) @binding(8) var<storage, read_write> out: array<f32>; // [rows, nHeads headDim]
override KV_F16: bool = false;
override HD: u32 = 64u;  // headDim (P.headDim): a constant, so the loops over it unroll
override MIN_CHUNK: u32 = 16u;  // fewest positions a chunk takes
const T: u32 = 64u;
var<workgroup> q: array<vec4f, 64>;
var<workgroup> scores: array<f32, 64>;  // exp(score - running max) of the block's positions
var<workgroup> red: array<f32, 64>;
var<workgroup> last: u32;
var<workgroup> weight: array<f32, 32>;  // exp(m_c - M) / L per chunk (splits <= 32)
var<workgroup> ms: array<f32, 32>;
var<workgroup> ls: array<f32, 32>;

// Dims 4i .. 4i + 3 of the K cache (i counts vec4s of [capacity, nKvHeads, headDim]).
fn key4(i: u32) -> vec4f {
  if (KV_F16) {
    let u = kCache[i];
    return vec4f(unpack2x16float(u.x), unpack2x16float(u.y));
  }
  return bitcast<vec4f>(vec4<u32>(kCache[2u * i], kCache[2u * i + 1u]));
}

// Element i of the V cache.
fn value(i: u32) -> f32 {
  if (KV_F16) { return unpack2x16float(vCache[i >> 1u])[i & 1u]; }
  return bitcast<f32>(vCache[i]);
}

fn loadPart(i: u32) -> f32 { return bitcast<f32>(atomicLoad(&part[i])); }
fn storePart(i: u32, v: f32) { atomicStore(&part[i], bitcast<u32>(v)); }

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let h = wid.x;
  let r = wid.y;
  let s = wid.z;
  let hd = HD;
  let hd4 = HD / 4u;
  let len = min(positions[r] + 1u, P.capacity);
  let chunk = max(MIN_CHUNK, (len + P.splits - 1u) / P.splits);
  let nChunks = (len + chunk - 1u) / chunk;
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
      for (var d = 0u; d < hd4; d++) { dotv += dot(q[d], key4(kb + d)); }
      sc = dotv * scale;
    }
    // The block's max by a tree over workgroup memory, then each thread's own exp: no thread
    // walks all 64 scores for them.
    red[li] = sc;
    workgroupBarrier();
    for (var o = T / 2u; o > 0u; o >>= 1u) {
      if (li < o) { red[li] = max(red[li], red[li + o]); }
      workgroupBarrier();
    }
    let mt = max(m, red[0]);
    scores[li] = select(0.0, exp(sc - mt), t < end);
    workgroupBarrier();
    let n = min(T, end - t0);
    let corr = exp(m - mt);
    l *= corr;
    acc *= corr;
    // Positions in sixteens, then fours: the V loads of a dim are independent, so 16 are in
    // flight at once (a loop of 4 left the step bound by the latency of 16 rounds of loads).
    let step = P.nKvHeads * hd;
    var j = 0u;
    for (; j + 16u <= n; j += 16u) {
      let vb = (t0 + j) * step + kvh * hd;
      for (var c = 0u; c < 4u; c++) {
        let d = li + c * T;
        if (d < hd) {
          // Named, not an array indexed in a loop (that spills to memory).
          let v0 = vec4f(value(vb + d), value(vb + step + d), value(vb + 2u * step + d),
                         value(vb + 3u * step + d));
          let e1 = vb + 4u * step + d;
          let v1 = vec4f(value(e1), value(e1 + step), value(e1 + 2u * step), value(e1 + 3u * step));
          let e2 = vb + 8u * step + d;
          let v2 = vec4f(value(e2), value(e2 + step), value(e2 + 2u * step), value(e2 + 3u * step));
          let e3 = vb + 12u * step + d;
          let v3 = vec4f(value(e3), value(e3 + step), value(e3 + 2u * step), value(e3 + 3u * step));
          acc[c] += dot(vec4f(scores[j], scores[j + 1u], scores[j + 2u], scores[j + 3u]), v0);
          acc[c] += dot(vec4f(scores[j + 4u], scores[j + 5u], scores[j + 6u], scores[j + 7u]), v1);
          acc[c] += dot(vec4f(scores[j + 8u], scores[j + 9u], scores[j + 10u], scores[j + 11u]), v2);
          acc[c] += dot(vec4f(scores[j + 12u], scores[j + 13u], scores[j + 14u], scores[j + 15u]), v3);
        }
      }
      for (var u = 0u; u < 4u; u++) {
        let i = j + 4u * u;
        l += scores[i] + scores[i + 1u] + scores[i + 2u] + scores[i + 3u];
      }
    }
    for (; j + 4u <= n; j += 4u) {
      let p = vec4f(scores[j], scores[j + 1u], scores[j + 2u], scores[j + 3u]);
      l += p.x + p.y + p.z + p.w;
      let vb = (t0 + j) * step + kvh * hd;
      for (var c = 0u; c < 4u; c++) {
        let d = li + c * T;
        if (d < hd) {
          let v = vec4f(value(vb + d), value(vb + step + d), value(vb + 2u * step + d),
                        value(vb + 3u * step + d));
          acc[c] += dot(p, v);
        }
      }
    }
    for (; j < n; j++) {
      let p = scores[j];
      l += p;
      let vb = ((t0 + j) * P.nKvHeads + kvh) * hd;
      for (var c = 0u; c < 4u; c++) {
        let d = li + c * T;
        if (d < hd) { acc[c] += p * value(vb + d); }
      }
    }
    m = mt;
    workgroupBarrier();
  }
  // A row of one chunk needs no merge: out = acc / l, the bits the merge would give (its weight
  // is exp(0) / l).
  if (nChunks == 1u) {
    let w = 1.0 / l;
    for (var c = 0u; c < 4u; c++) {
      let d = li + c * T;
      if (d < hd) { out[(r * P.nHeads + h) * hd + d] = w * acc[c]; }
    }
    return;
  }
  let row = (r * P.nHeads + h) * P.splits;
  let base = (row + s) * (2u + hd);
  if (li == 0u) { storePart(base, m); storePart(base + 1u, l); }
  for (var c = 0u; c < 4u; c++) {
    let d = li + c * T;
    if (d < hd) { storePart(base + 2u + d, acc[c]); }
  }
  // Every store of this workgroup comes before its arrival.
  storageBarrier();
  if (li == 0u) {
    last = u32(atomicAdd(&arrived[r * P.nHeads + h], 1u) == nChunks - 1u);
  }
  if (workgroupUniformLoad(&last) == 0u) { return; }
  // The last chunk of (head, row) to arrive merges them all, and resets the counter.
  if (li == 0u) { atomicStore(&arrived[r * P.nHeads + h], 0u); }
  if (li < nChunks) {
    ms[li] = loadPart((row + li) * (2u + hd));
    ls[li] = loadPart((row + li) * (2u + hd) + 1u);
  }
  workgroupBarrier();
  var mMax = -3.0e38;
  for (var c = 0u; c < nChunks; c++) { mMax = max(mMax, ms[c]); }
  var lSum = 0.0;
  for (var c = 0u; c < nChunks; c++) { lSum += exp(ms[c] - mMax) * ls[c]; }
  if (li < nChunks) { weight[li] = exp(ms[li] - mMax) / lSum; }
  workgroupBarrier();
  for (var d = li; d < hd; d += T) {
    var o = 0.0;
    for (var c = 0u; c < nChunks; c++) { o += weight[c] * loadPart((row + c) * (2u + hd) + 2u + d); }
    out[(r * P.nHeads + h) * hd + d] = o;
  }
}
