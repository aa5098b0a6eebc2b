// Matrix-vector product for a few rows (decode and verify) over one part of W (matrices over the
// binding limit are split by output rows; this part writes columns o = outOffset + n): r < rows,
//   y[r, o] = act(W[n, :] . x'[r, :] + b[o]) + res[r, o % resDim]        (each part optional)
//   where x' = x, or with NORM x' = RMSNorm(x) * g computed on the fly (the norm is fused here)
//   GATED:  y[r, o] = silu(W[n, :] . x'[r, :]) * (W[N + n, :] . x'[r, :]) (SwiGLU, W = [gate; up])
// Memory bound: 16-byte weight loads, two in flight per thread (the K loop is unrolled by hand),
// each weight read once for up to 8 query rows; with RO = 2 a thread also owns a second output
// row (the next one, or with ROPE its RoPE partner), so each x load serves two rows of W. Accumulators live in vec4s (query rows 0-3, 4-7)
// updated by straight-line code that the ROWS override switches on, so nothing spills to local
// memory. TPR threads share an output row and reduce through workgroup memory in a fixed order:
// a thread's slice of K depends only on TPR, so a row gets the same bits whatever ROWS and RO are
// (speculative == greedy).
// Row r of x starts at vec4 x4Offset + r x4Stride and row r of y at yOffset + r outStride, so x
// and y may be rows of wider tensors (one head's slice of a block).
// The epilogue (the reduction over TPR threads, then norm, bias, activation, residual, or with ROPE
// RoPE and the KV-cache write) is gemv_epilogue.wgsl, appended by the launcher.
struct Params {
  n: u32, k: u32, rows: u32, resDim: u32, eps: u32, outOffset: u32, outStride: u32,
  x4Offset: u32, x4Stride: u32, yOffset: u32, nHeads: u32, nKvHeads: u32, headDim: u32,
  capacity: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;  // [x4Offset + rows x4Stride] vec4
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;  // [N or 2N, K] (this part): f32 bits or 8 f16
@group(0) @binding(4) var<storage, read> b: array<f32>;        // [outOffset + N] (BIAS)
@group(0) @binding(5) var<storage, read> res: array<f32>;      // [rows, resDim] (RESIDUAL)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [yOffset + rows outStride]: columns outOffset..+N
@group(0) @binding(7) var<storage, read> g: array<vec4f>;      // [K] (NORM)
@group(0) @binding(8) var<storage, read> positions: array<u32>;        // [rows] (ROPE)
@group(0) @binding(9) var<storage, read> rope: array<vec2f>;           // [capacity, headDim/2] (ROPE)
@group(0) @binding(10) var<storage, read_write> kCache: array<u32>;    // [capacity, nKvHeads, headDim] (ROPE)
@group(0) @binding(11) var<storage, read_write> vCache: array<u32>;    // [capacity, nKvHeads, headDim] (ROPE)
override F16: bool = false;
override ROWS: u32 = 1u;   // query rows per workgroup (<= 8); the dispatch's y dimension walks row groups
override TPR: u32 = 32u;   // threads per output row
override RO: u32 = 1u;     // output rows per thread: 1 or 2 (RO * ROWS <= 8)
override GATED: bool = false;
override BIAS: bool = false;
override SILU: bool = false;
override RESIDUAL: bool = false;
override NORM: bool = false;
override ROPE: bool = false;
override KV_F16: bool = false; // (ROPE) the cache holds f16 pairs
const WG: u32 = 256u;
var<workgroup> invRms: array<f32, 8>;
// [1 or 2 (gated)][RO * ROWS <= 8][WG]. Sizing it per variant (as small as 1 KB) made the gated
// 1.1B product 20% slower on an H200 (more workgroups per SM), so it stays at the largest size.
var<workgroup> partial: array<f32, 4096>;

// The x (and norm weight g) vectors of K step i for query rows r0 .. r0+ROWS-1, loaded once and
// applied to every weight row a thread handles (gate, up, a second output row). f16: 8 values
// per row in a (first 4) and b (last 4); f32: 4 values in a. xs4 is x's row stride in vec4s.
struct X { a: array<vec4f, 8>, b: array<vec4f, 8>, ga: vec4f, gb: vec4f }

fn loadX(xBase: u32, i: u32, xs4: u32) -> X {
  var o: X;
  o.ga = vec4f(1.0);
  o.gb = vec4f(1.0);
  if (F16) {
    if (NORM) {
      o.ga = g[2u * i];
      o.gb = g[2u * i + 1u];
    }
    let j = xBase + 2u * i;
    o.a[0] = x[j];
    o.b[0] = x[j + 1u];
    if (ROWS > 1u) { o.a[1] = x[j + xs4]; o.b[1] = x[j + xs4 + 1u]; }
    if (ROWS > 2u) { o.a[2] = x[j + 2u * xs4]; o.b[2] = x[j + 2u * xs4 + 1u]; }
    if (ROWS > 3u) { o.a[3] = x[j + 3u * xs4]; o.b[3] = x[j + 3u * xs4 + 1u]; }
    if (ROWS > 4u) { o.a[4] = x[j + 4u * xs4]; o.b[4] = x[j + 4u * xs4 + 1u]; }
    if (ROWS > 5u) { o.a[5] = x[j + 5u * xs4]; o.b[5] = x[j + 5u * xs4 + 1u]; }
    if (ROWS > 6u) { o.a[6] = x[j + 6u * xs4]; o.b[6] = x[j + 6u * xs4 + 1u]; }
    if (ROWS > 7u) { o.a[7] = x[j + 7u * xs4]; o.b[7] = x[j + 7u * xs4 + 1u]; }
  } else {
    if (NORM) { o.ga = g[i]; }
    let j = xBase + i;
    o.a[0] = x[j];
    if (ROWS > 1u) { o.a[1] = x[j + xs4]; }
    if (ROWS > 2u) { o.a[2] = x[j + 2u * xs4]; }
    if (ROWS > 3u) { o.a[3] = x[j + 3u * xs4]; }
    if (ROWS > 4u) { o.a[4] = x[j + 4u * xs4]; }
    if (ROWS > 5u) { o.a[5] = x[j + 5u * xs4]; }
    if (ROWS > 6u) { o.a[6] = x[j + 6u * xs4]; }
    if (ROWS > 7u) { o.a[7] = x[j + 7u * xs4]; }
  }
  return o;
}

// W[row] . x[r] over the 8 (f16) or 4 (f32) weights of one vector, for query rows r0 .. r0+7.
struct Dots { lo: vec4f, hi: vec4f }

fn dots(v: vec4<u32>, xs: X) -> Dots {
  var o = Dots(vec4f(0.0), vec4f(0.0));
  if (F16) {
    let wa = vec4f(unpack2x16float(v.x), unpack2x16float(v.y)) * xs.ga;
    let wb = vec4f(unpack2x16float(v.z), unpack2x16float(v.w)) * xs.gb;
    o.lo.x = dot(wa, xs.a[0]) + dot(wb, xs.b[0]);
    if (ROWS > 1u) { o.lo.y = dot(wa, xs.a[1]) + dot(wb, xs.b[1]); }
    if (ROWS > 2u) { o.lo.z = dot(wa, xs.a[2]) + dot(wb, xs.b[2]); }
    if (ROWS > 3u) { o.lo.w = dot(wa, xs.a[3]) + dot(wb, xs.b[3]); }
    if (ROWS > 4u) { o.hi.x = dot(wa, xs.a[4]) + dot(wb, xs.b[4]); }
    if (ROWS > 5u) { o.hi.y = dot(wa, xs.a[5]) + dot(wb, xs.b[5]); }
    if (ROWS > 6u) { o.hi.z = dot(wa, xs.a[6]) + dot(wb, xs.b[6]); }
    if (ROWS > 7u) { o.hi.w = dot(wa, xs.a[7]) + dot(wb, xs.b[7]); }
  } else {
    let wv = bitcast<vec4f>(v) * xs.ga;
    o.lo.x = dot(wv, xs.a[0]);
    if (ROWS > 1u) { o.lo.y = dot(wv, xs.a[1]); }
    if (ROWS > 2u) { o.lo.z = dot(wv, xs.a[2]); }
    if (ROWS > 3u) { o.lo.w = dot(wv, xs.a[3]); }
    if (ROWS > 4u) { o.hi.x = dot(wv, xs.a[4]); }
    if (ROWS > 5u) { o.hi.y = dot(wv, xs.a[5]); }
    if (ROWS > 6u) { o.hi.z = dot(wv, xs.a[6]); }
    if (ROWS > 7u) { o.hi.w = dot(wv, xs.a[7]); }
  }
  return o;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let outs = WG / TPR;  // thread groups per workgroup, RO output rows each
  let o = li / TPR;
  let lane = li % TPR;
  let wg = wid.x + wid.z * nwg.x;
  let n = outRow((wg * outs + o) * RO);
  let nB = outRow((wg * outs + o) * RO + 1u);  // RO = 2: n + 1, or with ROPE n's RoPE partner
  let second = RO > 1u && nB < P.n;
  let r0 = wid.y * ROWS;
  let k4 = P.k / 4u;
  var perRow = k4;  // vec4<u32> per weight row
  if (F16) { perRow = P.k / 8u; }
  // Rows past P.rows in the last row group read clamped, unused x; only their outputs are skipped.
  let xs4 = P.x4Stride;
  let xBase = P.x4Offset + r0 * xs4;
  if (NORM) {
    // 1 / rms of each x row, reduced in a fixed order (the same for every ROWS).
    for (var r = 0u; r < ROWS; r++) {
      var s = 0.0;
      for (var j = li; j < k4; j += WG) { let v = x[xBase + r * xs4 + j]; s += dot(v, v); }
      partial[r * WG + li] = s;
    }
    workgroupBarrier();
    for (var o = WG / 2u; o > 0u; o >>= 1u) {
      if (li < o) {
        for (var r = 0u; r < ROWS; r++) { partial[r * WG + li] += partial[r * WG + li + o]; }
      }
      workgroupBarrier();
    }
    if (li < ROWS) { invRms[li] = inverseSqrt(partial[li * WG] / f32(P.k) + bitcast<f32>(P.eps)); }
    workgroupBarrier();
  }
  // Accumulators: a* for output row n, b* for row n + 1 (RO = 2); Up for the up rows (GATED).
  var aLo = vec4f(0.0);
  var aHi = vec4f(0.0);
  var aUpLo = vec4f(0.0);
  var aUpHi = vec4f(0.0);
  var bLo = vec4f(0.0);
  var bHi = vec4f(0.0);
  var bUpLo = vec4f(0.0);
  var bUpHi = vec4f(0.0);
  if (n < P.n) {
    let baseA = n * perRow;
    let baseAUp = (P.n + n) * perRow;
    let baseB = nB * perRow;
    let baseBUp = (P.n + nB) * perRow;
    // Two K steps per iteration (i, i + TPR), summed in that order: the same order as one at a time.
    var i = lane;
    for (; i + TPR < perRow; i += 2u * TPR) {
      let w0 = w[baseA + i];
      let w1 = w[baseA + i + TPR];
      var u0 = vec4<u32>(0u);
      var u1 = vec4<u32>(0u);
      if (GATED) { u0 = w[baseAUp + i]; u1 = w[baseAUp + i + TPR]; }
      var v0 = vec4<u32>(0u);
      var v1 = vec4<u32>(0u);
      var t0 = vec4<u32>(0u);
      var t1 = vec4<u32>(0u);
      if (RO > 1u && second) {
        v0 = w[baseB + i];
        v1 = w[baseB + i + TPR];
        if (GATED) { t0 = w[baseBUp + i]; t1 = w[baseBUp + i + TPR]; }
      }
      let x0 = loadX(xBase, i, xs4);
      let x1 = loadX(xBase, i + TPR, xs4);
      let d0 = dots(w0, x0);
      aLo += d0.lo;
      aHi += d0.hi;
      let d1 = dots(w1, x1);
      aLo += d1.lo;
      aHi += d1.hi;
      if (GATED) {
        let e0 = dots(u0, x0);
        aUpLo += e0.lo;
        aUpHi += e0.hi;
        let e1 = dots(u1, x1);
        aUpLo += e1.lo;
        aUpHi += e1.hi;
      }
      if (RO > 1u && second) {
        let f0 = dots(v0, x0);
        bLo += f0.lo;
        bHi += f0.hi;
        let f1 = dots(v1, x1);
        bLo += f1.lo;
        bHi += f1.hi;
        if (GATED) {
          let h0 = dots(t0, x0);
          bUpLo += h0.lo;
          bUpHi += h0.hi;
          let h1 = dots(t1, x1);
          bUpLo += h1.lo;
          bUpHi += h1.hi;
        }
      }
    }
    if (i < perRow) {
      let x0 = loadX(xBase, i, xs4);
      let d0 = dots(w[baseA + i], x0);
      aLo += d0.lo;
      aHi += d0.hi;
      if (GATED) {
        let e0 = dots(w[baseAUp + i], x0);
        aUpLo += e0.lo;
        aUpHi += e0.hi;
      }
      if (RO > 1u && second) {
        let f0 = dots(w[baseB + i], x0);
        bLo += f0.lo;
        bHi += f0.hi;
        if (GATED) {
          let h0 = dots(w[baseBUp + i], x0);
          bUpLo += h0.lo;
          bUpHi += h0.hi;
        }
      }
    }
  }
  // partial[(ro * ROWS + r) * WG + li] for output row n + ro and query row r.
  for (var r = 0u; r < ROWS; r++) {
    var a: f32;
    var au: f32;
    var b2: f32;
    var bu: f32;
    if (r < 4u) {
      a = aLo[r]; au = aUpLo[r]; b2 = bLo[r]; bu = bUpLo[r];
    } else {
      a = aHi[r - 4u]; au = aUpHi[r - 4u]; b2 = bHi[r - 4u]; bu = bUpHi[r - 4u];
    }
    partial[r * WG + li] = a;
    if (GATED) { partial[(RO * ROWS + r) * WG + li] = au; }
    if (RO > 1u) {
      partial[(ROWS + r) * WG + li] = b2;
      if (GATED) { partial[(RO * ROWS + ROWS + r) * WG + li] = bu; }
    }
  }
  workgroupBarrier();
  epilogue(li, wg, outs, r0);
}
