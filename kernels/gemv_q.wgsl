// Matrix-vector product for a few rows (decode and verify) with q8 or q4 weights (quantize.wgsl's
// layout: blocks of 32 weights along a row, one f16 scale each), over one part of W: r < rows,
//   y[r, o] = act(W[n, :] . x'[r, :] + b[o]) + res[r, o % resDim]       (each part optional)
//   where x' = x, or with NORM x' = RMSNorm(x) * g computed on the fly (the norm is fused here)
//   GATED:  y[r, o] = silu(Wgate[n, :] . x'[r, :]) * (Wup[n, :] . x'[r, :])  (W = [gate; up])
// The same contract as gemv.wgsl, which serves f32 and f16 weights, and the same walk over K: a
// thread's step is 8 consecutive weights (q8: 8 bytes; q4: 4 bytes), so the TPR threads of an
// output row read consecutive weights and consecutive x (a step per 16-byte unit of the weights
// instead made each x load touch 8 cache lines and ran at a third of the bandwidth). UNROLL
// steps are in flight per thread (32 bytes, as gemv.wgsl's two f16 loads). A step's sum is
// d * (q . x) over its 8 weights; steps are added in a fixed order that depends on TPR and
// UNROLL only, and TPR threads reduce in a fixed order, so a row gets the same bits whatever
// ROWS is (speculative == greedy).
// The epilogue is gemv.wgsl's (gemv_epilogue.wgsl, appended), with one output row per thread.
struct Params {
  n: u32, k: u32, rows: u32, resDim: u32, eps: u32, outOffset: u32, outStride: u32,
  x4Offset: u32, x4Stride: u32, yOffset: u32, nHeads: u32, nKvHeads: u32, headDim: u32,
  capacity: u32, scaleBase: u32, scaleStride: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;  // [x4Offset + rows x4Stride] vec4
@group(0) @binding(3) var<storage, read> w: array<u32>;        // the part's values
@group(0) @binding(4) var<storage, read> b: array<f32>;        // [outOffset + N] (BIAS)
@group(0) @binding(5) var<storage, read> res: array<f32>;      // [rows, resDim] (RESIDUAL)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [yOffset + rows outStride]
@group(0) @binding(7) var<storage, read> g: array<vec4f>;      // [K] (NORM)
@group(0) @binding(8) var<storage, read> positions: array<u32>;        // [rows] (ROPE)
@group(0) @binding(9) var<storage, read> rope: array<vec2f>;           // [capacity, headDim/2] (ROPE)
@group(0) @binding(10) var<storage, read_write> kCache: array<u32>;    // [capacity, nKvHeads, headDim] (ROPE)
@group(0) @binding(11) var<storage, read_write> vCache: array<u32>;    // [capacity, nKvHeads, headDim] (ROPE)
@group(0) @binding(12) var<storage, read> sc: array<u32>;      // the same part buffer: its scales
override Q4: bool = false;
override ROWS: u32 = 1u;   // query rows per workgroup (<= 8)
override TPR: u32 = 32u;   // threads per output row
override UNROLL: u32 = 4u; // steps in flight per thread (<= 8)
override GATED: bool = false;
override BIAS: bool = false;
override SILU: bool = false;
override RESIDUAL: bool = false;
override NORM: bool = false;
override ROPE: bool = false;
override KV_F16: bool = false; // (ROPE) the cache holds f16 pairs
const WG: u32 = 256u;
const RO: u32 = 1u;  // output rows per thread (gemv.wgsl's override)
var<workgroup> invRms: array<f32, 8>;
var<workgroup> partial: array<f32, 4096>;  // [1 or 2 (gated)][ROWS][WG]

// Integers to floats without a conversion instruction: the float with bits 0x4B000000 | m is
// 2^23 + m exactly for m < 2^23.
const MAGIC: u32 = 0x4B000000u;
// Four signed bytes (weight 4w + e in byte e): flipping the sign bit makes them b + 128 unsigned.
fn bytes4(u: u32) -> vec4f {
  let v = (vec4u(u ^ 0x80808080u) >> vec4u(0u, 8u, 16u, 24u)) & vec4u(0xffu);
  return bitcast<vec4f>(v | vec4u(MAGIC)) - vec4f(8388736.0); // 2^23 + 128
}
// Nibbles 0-3 and 4-7 (weight 8w + e in nibble e), stored q + 8.
fn nibLo(u: u32) -> vec4f {
  let v = (vec4u(u) >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u);
  return bitcast<vec4f>(v | vec4u(MAGIC)) - vec4f(8388616.0); // 2^23 + 8
}
fn nibHi(u: u32) -> vec4f {
  let v = (vec4u(u) >> vec4u(16u, 20u, 24u, 28u)) & vec4u(15u);
  return bitcast<vec4f>(v | vec4u(MAGIC)) - vec4f(8388616.0);
}

// The raw words of step s (8 weights) of part row `row`: q8 two words, q4 one (.y unused).
fn load(row: u32, s: u32) -> vec2<u32> {
  if (Q4) { return vec2<u32>(w[row * (P.k / 8u) + s], 0u); }
  let i = row * (P.k / 4u) + 2u * s;
  return vec2<u32>(w[i], w[i + 1u]);
}

// Step s's weights (q8: q; q4: q - 8) times the norm weight when NORM, and its scale d.
struct Step { lo: vec4f, hi: vec4f, d: f32 }

fn unpack(q: vec2<u32>, row: u32, s: u32) -> Step {
  var o: Step;
  if (Q4) { o.lo = nibLo(q.x); o.hi = nibHi(q.x); } else { o.lo = bytes4(q.x); o.hi = bytes4(q.y); }
  if (NORM) { o.lo *= g[2u * s]; o.hi *= g[2u * s + 1u]; }
  let blk = s / 4u; // 4 steps to a block of 32
  o.d = unpack2x16float(sc[P.scaleBase + row * P.scaleStride + (blk >> 1u)])[blk & 1u];
  return o;
}

fn stepDot(t: Step, xi: u32) -> f32 { return t.d * (dot(t.lo, x[xi]) + dot(t.hi, x[xi + 1u])); }

// acc[r] += step . x row r for query rows 0 .. ROWS-1 (straight-line: registers only); the
// step's x starts at vec4 xi of row 0.
struct Acc { lo: vec4f, hi: vec4f }

fn accumulate(a: ptr<function, Acc>, t: Step, xi: u32, xs4: u32) {
  (*a).lo.x += stepDot(t, xi);
  if (ROWS > 1u) { (*a).lo.y += stepDot(t, xi + xs4); }
  if (ROWS > 2u) { (*a).lo.z += stepDot(t, xi + 2u * xs4); }
  if (ROWS > 3u) { (*a).lo.w += stepDot(t, xi + 3u * xs4); }
  if (ROWS > 4u) { (*a).hi.x += stepDot(t, xi + 4u * xs4); }
  if (ROWS > 5u) { (*a).hi.y += stepDot(t, xi + 5u * xs4); }
  if (ROWS > 6u) { (*a).hi.z += stepDot(t, xi + 6u * xs4); }
  if (ROWS > 7u) { (*a).hi.w += stepDot(t, xi + 7u * xs4); }
}

// Step s of output row n (and of its up row when GATED) into the accumulators.
fn apply(a: ptr<function, Acc>, au: ptr<function, Acc>, n: u32, s: u32, q: vec2<u32>,
         qu: vec2<u32>, xBase: u32, xs4: u32) {
  accumulate(a, unpack(q, n, s), xBase + 2u * s, xs4);
  if (GATED) { accumulate(au, unpack(qu, P.n + n, s), xBase + 2u * s, xs4); }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let outs = WG / TPR;
  let o = li / TPR;
  let lane = li % TPR;
  let wg = wid.x + wid.z * nwg.x;
  let n = outRow(wg * outs + o);
  let r0 = wid.y * ROWS;
  let k4 = P.k / 4u;
  let steps = P.k / 8u;
  let xs4 = P.x4Stride;
  let xBase = P.x4Offset + r0 * xs4;
  if (NORM) {
    for (var r = 0u; r < ROWS; r++) {
      var s = 0.0;
      for (var j = li; j < k4; j += WG) { let v = x[xBase + r * xs4 + j]; s += dot(v, v); }
      partial[r * WG + li] = s;
    }
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
      if (li < h) {
        for (var r = 0u; r < ROWS; r++) { partial[r * WG + li] += partial[r * WG + li + h]; }
      }
      workgroupBarrier();
    }
    if (li < ROWS) { invRms[li] = inverseSqrt(partial[li * WG] / f32(P.k) + bitcast<f32>(P.eps)); }
    workgroupBarrier();
  }
  var a = Acc(vec4f(0.0), vec4f(0.0));
  var au = Acc(vec4f(0.0), vec4f(0.0));
  if (n < P.n) {
    let up = P.n + n;
    let z = vec2<u32>(0u);
    // UNROLL steps (i, i + TPR, ...) loaded first, then applied in that order.
    for (var i = lane; i < steps; i += UNROLL * TPR) {
      var q0 = load(n, i);
      var u0 = z;
      var q1 = z; var u1 = z; var q2 = z; var u2 = z; var q3 = z; var u3 = z;
      var q4 = z; var u4 = z; var q5 = z; var u5 = z; var q6 = z; var u6 = z; var q7 = z; var u7 = z;
      let ok1 = UNROLL > 1u && i + TPR < steps;
      let ok2 = UNROLL > 2u && i + 2u * TPR < steps;
      let ok3 = UNROLL > 3u && i + 3u * TPR < steps;
      let ok4 = UNROLL > 4u && i + 4u * TPR < steps;
      let ok5 = UNROLL > 5u && i + 5u * TPR < steps;
      let ok6 = UNROLL > 6u && i + 6u * TPR < steps;
      let ok7 = UNROLL > 7u && i + 7u * TPR < steps;
      if (ok1) { q1 = load(n, i + TPR); }
      if (ok2) { q2 = load(n, i + 2u * TPR); }
      if (ok3) { q3 = load(n, i + 3u * TPR); }
      if (ok4) { q4 = load(n, i + 4u * TPR); }
      if (ok5) { q5 = load(n, i + 5u * TPR); }
      if (ok6) { q6 = load(n, i + 6u * TPR); }
      if (ok7) { q7 = load(n, i + 7u * TPR); }
      if (GATED) {
        u0 = load(up, i);
        if (ok1) { u1 = load(up, i + TPR); }
        if (ok2) { u2 = load(up, i + 2u * TPR); }
        if (ok3) { u3 = load(up, i + 3u * TPR); }
        if (ok4) { u4 = load(up, i + 4u * TPR); }
        if (ok5) { u5 = load(up, i + 5u * TPR); }
        if (ok6) { u6 = load(up, i + 6u * TPR); }
        if (ok7) { u7 = load(up, i + 7u * TPR); }
      }
      apply(&a, &au, n, i, q0, u0, xBase, xs4);
      if (ok1) { apply(&a, &au, n, i + TPR, q1, u1, xBase, xs4); }
      if (ok2) { apply(&a, &au, n, i + 2u * TPR, q2, u2, xBase, xs4); }
      if (ok3) { apply(&a, &au, n, i + 3u * TPR, q3, u3, xBase, xs4); }
      if (ok4) { apply(&a, &au, n, i + 4u * TPR, q4, u4, xBase, xs4); }
      if (ok5) { apply(&a, &au, n, i + 5u * TPR, q5, u5, xBase, xs4); }
      if (ok6) { apply(&a, &au, n, i + 6u * TPR, q6, u6, xBase, xs4); }
      if (ok7) { apply(&a, &au, n, i + 7u * TPR, q7, u7, xBase, xs4); }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    var s: f32;
    var su: f32;
    if (r < 4u) { s = a.lo[r]; su = au.lo[r]; } else { s = a.hi[r - 4u]; su = au.hi[r - 4u]; }
    partial[r * WG + li] = s;
    if (GATED) { partial[(ROWS + r) * WG + li] = su; }
  }
  workgroupBarrier();
  epilogue(li, wg, outs, r0);
}
