// Sampling, and lossless speculative sampling, for the rows of a verify block (one workgroup per
// row r). Row r's distribution p: the trunk's logits with a repetition penalty on every token of
// the context (the sequence before the block and the block's ids up to row r; a logit l becomes
// l / penalty if l > 0, else l * penalty), divided by the temperature, softmaxed, then cut to the
// top k, to the smallest top set holding topP of the mass, and to tokens with at least minP times
// the largest probability (each cut on what the one before left).
// The draft of row r is d = ids[r + 1] (none past the block or for NO_TOKEN). The drafts are
// points (the heads' argmax, a lookup, a replay): q = delta_d. Speculative sampling (Leviathan et
// al., Chen et al.) accepts d with probability min(1, p(d) / q(d)) = p(d); on rejection it samples
// from norm(max(0, p - q)), which is p without d. picks[r] gets d when accepted, else that sample
// (or a sample of p where there is no draft), so the greedy verifier downstream (emit picks[r],
// go on while ids[r + 1] == picks[r]) emits exactly a sample of the goal distribution.
// Temperature 0 is greedy: the argmax of the penalized logits (lowest index on ties), a draft
// accepted only if it is that argmax.
// Random numbers: Philox4x32-10 keyed by the seed, counter (position, purpose): the same seed gives
// the same tokens on any GPU, whatever the block size.
struct Params {
  rows: u32, vocab: u32, words: u32, temperature: f32, topK: u32, topP: f32, minP: f32,
  penalty: f32, seedLo: u32, seedHi: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;        // [S_WORDS] decode state
@group(0) @binding(2) var<storage, read> logits: array<f32>;       // [rows, vocab]
@group(0) @binding(3) var<storage, read> ids: array<u32>;          // [rows] block token ids
@group(0) @binding(4) var<storage, read> positions: array<u32>;    // [rows]
@group(0) @binding(5) var<storage, read> tokens: array<u32>;       // [capacity] the sequence
@group(0) @binding(6) var<storage, read_write> seen: array<atomic<u32>>; // [rows, words] bitmaps
@group(0) @binding(7) var<storage, read_write> picks: array<u32>;  // [rows]
@group(0) @binding(8) var<storage, read_write> zs: array<f32>;     // [rows, vocab] scratch: z
override ACCEPT_ALL: bool = false;  // a broken acceptance rule, for the statistical test only
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
var<workgroup> redF: array<f32, 256>;
var<workgroup> redU: array<u32, 256>;
var<workgroup> found: atomic<u32>;
var<workgroup> lastKept: atomic<u32>;

fn philox(c0: u32, c1: u32) -> u32 {
  var c = vec4u(c0, c1, 0x9e3779b9u, 0u);
  var k = vec2u(P.seedLo, P.seedHi);
  for (var i = 0u; i < 10u; i++) {
    let p0 = c.x * 0xD2511F53u;
    let h0 = mulHi(c.x, 0xD2511F53u);
    let p1 = c.z * 0xCD9E8D57u;
    let h1 = mulHi(c.z, 0xCD9E8D57u);
    c = vec4u(h1 ^ c.y ^ k.x, p1, h0 ^ c.w ^ k.y, p0);
    k += vec2u(0x9E3779B9u, 0xBB67AE85u);
  }
  return c.x;
}

// The high 32 bits of a * b.
fn mulHi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let lo = a0 * b0;
  let m1 = a1 * b0;
  let m2 = a0 * b1;
  let mid = (lo >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu);
  return a1 * b1 + (m1 >> 16u) + (m2 >> 16u) + (mid >> 16u);
}

// A uniform draw in [0, 1) for this position and purpose (0: sample, 1: accept test).
fn rand01(pos: u32, purpose: u32) -> f32 {
  return f32(philox(pos, purpose) >> 8u) * (1.0 / 16777216.0);
}

// Floats in an order-preserving u32 encoding, for exact bisection on values.
fn key(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn unkey(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

fn sumF(li: u32, v: f32) -> f32 {
  redF[li] = v;
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o) { redF[li] += redF[li + o]; }
    workgroupBarrier();
  }
  let s = workgroupUniformLoad(&redF[0]);
  workgroupBarrier();
  return s;
}
fn maxF(li: u32, v: f32) -> f32 {
  redF[li] = v;
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o) { redF[li] = max(redF[li], redF[li + o]); }
    workgroupBarrier();
  }
  let s = workgroupUniformLoad(&redF[0]);
  workgroupBarrier();
  return s;
}
fn sumU(li: u32, v: u32) -> u32 {
  redU[li] = v;
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o) { redU[li] += redU[li + o]; }
    workgroupBarrier();
  }
  let s = workgroupUniformLoad(&redU[0]);
  workgroupBarrier();
  return s;
}

fn isSeen(row: u32, t: u32) -> bool {
  return (atomicLoad(&seen[row * P.words + (t >> 5u)]) & (1u << (t & 31u))) != 0u;
}

// Row r's scaled logit of token t: penalized, over the temperature (or as is at temperature 0).
fn z(r: u32, t: u32) -> f32 {
  var l = logits[r * P.vocab + t];
  if (P.penalty != 1.0 && isSeen(r, t)) { l = select(l * P.penalty, l / P.penalty, l > 0.0); }
  if (P.temperature > 0.0) { l = l / P.temperature; }
  return l;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let r = wid.x;
  let pos = positions[r];
  var draft = NONE;
  if (r + 1u < P.rows && ids[r + 1u] < P.vocab) { draft = ids[r + 1u]; }
  // The context's tokens, marked once each in this row's bitmap.
  if (P.penalty != 1.0) {
    for (var i = li; i < P.words; i += WG) { atomicStore(&seen[r * P.words + i], 0u); }
    storageBarrier();
    workgroupBarrier();
    let before = positions[0] + 1u;  // tokens[0 .. positions[0]] precede the block
    for (var i = li; i < before + r; i += WG) {
      var t = 0u;
      if (i < before) { t = tokens[i]; } else { t = ids[i - before + 1u]; }
      if (t < P.vocab) { atomicOr(&seen[r * P.words + (t >> 5u)], 1u << (t & 31u)); }
    }
    storageBarrier();
    workgroupBarrier();
  }
  // The largest scaled logit (lowest index on ties, for temperature 0).
  var m = -3.0e38;
  var mi = NONE;
  let base = r * P.vocab;
  for (var t = li; t < P.vocab; t += WG) {
    let v = z(r, t);
    zs[base + t] = v;  // every later pass reads z from here (the penalty looked up once)
    if (v > m) { m = v; mi = t; }
  }
  storageBarrier();
  let zmax = maxF(li, m);
  if (P.temperature == 0.0) {
    redU[li] = select(NONE, mi, m == zmax);
    workgroupBarrier();
    for (var o = WG / 2u; o > 0u; o >>= 1u) {
      if (li < o) { redU[li] = min(redU[li], redU[li + o]); }
      workgroupBarrier();
    }
    if (li == 0u) { picks[r] = redU[0]; }
    return;
  }
  // Cut 1, top k: the largest key kk with at least topK tokens >= it (ties all kept).
  var lo = 0u;
  if (P.topK < P.vocab) {
    var hi = 0xffffffffu;
    lo = 0u;
    for (var it = 0u; it < 32u && lo < hi; it++) {
      let mid = lo + ((hi - lo) >> 1u) + ((hi - lo) & 1u);  // ceil of the half, no overflow
      var n = 0u;
      for (var t = li; t < P.vocab; t += WG) { n += u32(key(zs[base + t]) >= mid); }
      if (sumU(li, n) >= P.topK) { lo = mid; } else { hi = mid - 1u; }
    }
  }
  // Cut 2, top p: the largest key >= lo whose tokens at or above it hold topP of what is left.
  var total = 0.0;
  for (var t = li; t < P.vocab; t += WG) {
    let v = zs[base + t];
    if (key(v) >= lo) { total += exp(v - zmax); }
  }
  total = sumF(li, total);
  if (P.topP < 1.0) {
    var l2 = lo;
    var hi = key(zmax);
    for (var it = 0u; it < 32u && l2 < hi; it++) {
      let mid = l2 + ((hi - l2) >> 1u) + ((hi - l2) & 1u);
      var s = 0.0;
      for (var t = li; t < P.vocab; t += WG) {
        let v = zs[base + t];
        if (key(v) >= mid) { s += exp(v - zmax); }
      }
      if (sumF(li, s) >= P.topP * total) { l2 = mid; } else { hi = mid - 1u; }
    }
    lo = l2;
  }
  // Cut 3, min p: probability >= minP times the largest, i.e. z >= zmax + ln(minP).
  if (P.minP > 0.0) { lo = max(lo, key(zmax + log(P.minP))); }
  // The kept mass, and the draft's share of it.
  var kept = 0.0;
  for (var t = li; t < P.vocab; t += WG) {
    let v = zs[base + t];
    if (key(v) >= lo) { kept += exp(v - zmax); }
  }
  kept = sumF(li, kept);
  var pd = 0.0;
  if (draft != NONE) {
    let v = zs[base + draft];
    if (key(v) >= lo) { pd = exp(v - zmax); }
    if (ACCEPT_ALL || rand01(pos, 1u) < pd / kept) {
      if (li == 0u) { picks[r] = draft; }
      return;
    }
  }
  // Sample from the kept tokens without the rejected draft: the inverse of their cumulative mass
  // in id order. Each thread owns a contiguous run of ids; the one whose share of the mass holds
  // the goal finds the token. Should rounding put the goal past the end, the last kept token.
  let goal = rand01(pos, 0u) * (kept - pd);
  let per = (P.vocab + WG - 1u) / WG;
  let a = min(li * per, P.vocab);
  let b = min(a + per, P.vocab);
  var mine = 0.0;
  var myLast = NONE;
  for (var t = a; t < b; t++) {
    let v = zs[base + t];
    if (t != draft && key(v) >= lo) {
      mine += exp(v - zmax);
      myLast = t;
    }
  }
  if (li == 0u) {
    atomicStore(&found, NONE);
    atomicStore(&lastKept, 0u);
  }
  redF[li] = mine;
  workgroupBarrier();
  if (myLast != NONE) { atomicMax(&lastKept, myLast); }
  var before = 0.0;
  for (var j = 0u; j < li; j++) { before += redF[j]; }
  if (mine > 0.0 && goal >= before && goal < before + mine) {
    var acc = before;
    var pick = myLast;
    for (var t = a; t < b; t++) {
      let v = zs[base + t];
      if (t != draft && key(v) >= lo) {
        acc += exp(v - zmax);
        if (acc > goal) {
          pick = t;
          break;
        }
      }
    }
    atomicMin(&found, pick);
  }
  workgroupBarrier();
  if (li == 0u) {
    var pick = atomicLoad(&found);
    if (pick == NONE) { pick = atomicLoad(&lastKept); }
    picks[r] = pick;
  }
}
