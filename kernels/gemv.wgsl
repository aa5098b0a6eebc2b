// Matrix-vector product for a few rows (decode and verify): for r < rows, n < N
//   y[r, n] = act(W[n, :] . x'[r, :] + b[n]) + res[r, n % resDim]        (each part optional)
//   where x' = x, or with NORM x' = RMSNorm(x) * g computed on the fly (the norm is fused here)
//   GATED:  y[r, n] = silu(W[n, :] . x[r, :]) * (W[N + n, :] . x[r, :])  (SwiGLU, W = [gate; up])
// Memory bound: 16-byte weight loads, two in flight per thread (the K loop is unrolled by hand),
// each weight read once for up to 8 query rows. Accumulators live in two vec4 (rows 0-3, 4-7)
// updated by straight-line code that the ROWS override switches on, so nothing spills to local
// memory. TPR threads share an output row and reduce through workgroup memory in a fixed order:
// a thread's slice of K depends only on TPR, so a row gets the same bits whatever ROWS is
// (speculative == greedy).
struct Params { n: u32, k: u32, rows: u32, resDim: u32, eps: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;  // [rows, K]
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;  // [N or 2N, K]: f32 bits or 8 f16
@group(0) @binding(4) var<storage, read> b: array<f32>;        // [N] (BIAS)
@group(0) @binding(5) var<storage, read> res: array<f32>;      // [rows, resDim] (RESIDUAL)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [rows, N]
@group(0) @binding(7) var<storage, read> g: array<vec4f>;      // [K] (NORM)
override F16: bool = false;
override ROWS: u32 = 1u;   // query rows per workgroup (<= 8); the dispatch's y dimension walks row groups
override TPR: u32 = 32u;   // threads per output row
override GATED: bool = false;
override BIAS: bool = false;
override SILU: bool = false;
override RESIDUAL: bool = false;
override NORM: bool = false;
const WG: u32 = 256u;
var<workgroup> invRms: array<f32, 8>;
var<workgroup> partial: array<f32, 4096>;  // [2 (gated)][8 rows][WG]

fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }

// W[row] . x[r] over the 8 (f16) or 4 (f32) weights of vector i, for query rows r0 .. r0+7.
struct Dots { lo: vec4f, hi: vec4f }

fn dots(v: vec4<u32>, xBase: u32, i: u32, k4: u32) -> Dots {
  var o = Dots(vec4f(0.0), vec4f(0.0));
  if (F16) {
    var wa = vec4f(unpack2x16float(v.x), unpack2x16float(v.y));
    var wb = vec4f(unpack2x16float(v.z), unpack2x16float(v.w));
    if (NORM) {
      wa *= g[2u * i];
      wb *= g[2u * i + 1u];
    }
    let j = xBase + 2u * i;
    o.lo.x = dot(wa, x[j]) + dot(wb, x[j + 1u]);
    if (ROWS > 1u) { o.lo.y = dot(wa, x[j + k4]) + dot(wb, x[j + k4 + 1u]); }
    if (ROWS > 2u) { o.lo.z = dot(wa, x[j + 2u * k4]) + dot(wb, x[j + 2u * k4 + 1u]); }
    if (ROWS > 3u) { o.lo.w = dot(wa, x[j + 3u * k4]) + dot(wb, x[j + 3u * k4 + 1u]); }
    if (ROWS > 4u) { o.hi.x = dot(wa, x[j + 4u * k4]) + dot(wb, x[j + 4u * k4 + 1u]); }
    if (ROWS > 5u) { o.hi.y = dot(wa, x[j + 5u * k4]) + dot(wb, x[j + 5u * k4 + 1u]); }
    if (ROWS > 6u) { o.hi.z = dot(wa, x[j + 6u * k4]) + dot(wb, x[j + 6u * k4 + 1u]); }
    if (ROWS > 7u) { o.hi.w = dot(wa, x[j + 7u * k4]) + dot(wb, x[j + 7u * k4 + 1u]); }
  } else {
    var wv = bitcast<vec4f>(v);
    if (NORM) { wv *= g[i]; }
    let j = xBase + i;
    o.lo.x = dot(wv, x[j]);
    if (ROWS > 1u) { o.lo.y = dot(wv, x[j + k4]); }
    if (ROWS > 2u) { o.lo.z = dot(wv, x[j + 2u * k4]); }
    if (ROWS > 3u) { o.lo.w = dot(wv, x[j + 3u * k4]); }
    if (ROWS > 4u) { o.hi.x = dot(wv, x[j + 4u * k4]); }
    if (ROWS > 5u) { o.hi.y = dot(wv, x[j + 5u * k4]); }
    if (ROWS > 6u) { o.hi.z = dot(wv, x[j + 6u * k4]); }
    if (ROWS > 7u) { o.hi.w = dot(wv, x[j + 7u * k4]); }
  }
  return o;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let outs = WG / TPR;
  let o = li / TPR;
  let lane = li % TPR;
  let wg = wid.x + wid.z * nwg.x;
  let n = wg * outs + o;
  let r0 = wid.y * ROWS;
  let k4 = P.k / 4u;
  var perRow = k4;  // vec4<u32> per weight row
  if (F16) { perRow = P.k / 8u; }
  // Rows past P.rows in the last row group read clamped, unused x; only their outputs are skipped.
  let xBase = r0 * k4;
  if (NORM) {
    // 1 / rms of each x row, reduced in a fixed order (the same for every ROWS).
    for (var r = 0u; r < ROWS; r++) {
      var s = 0.0;
      for (var j = li; j < k4; j += WG) { let v = x[xBase + r * k4 + j]; s += dot(v, v); }
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
  var lo = vec4f(0.0);
  var hi = vec4f(0.0);
  var upLo = vec4f(0.0);
  var upHi = vec4f(0.0);
  if (n < P.n) {
    let base = n * perRow;
    let baseUp = (P.n + n) * perRow;
    var i = lane;
    for (; i + TPR < perRow; i += 2u * TPR) {
      let w0 = w[base + i];
      let w1 = w[base + i + TPR];
      var u0 = vec4<u32>(0u);
      var u1 = vec4<u32>(0u);
      if (GATED) { u0 = w[baseUp + i]; u1 = w[baseUp + i + TPR]; }
      let d0 = dots(w0, xBase, i, k4);
      lo += d0.lo;
      hi += d0.hi;
      let d1 = dots(w1, xBase, i + TPR, k4);
      lo += d1.lo;
      hi += d1.hi;
      if (GATED) {
        let e0 = dots(u0, xBase, i, k4);
        upLo += e0.lo;
        upHi += e0.hi;
        let e1 = dots(u1, xBase, i + TPR, k4);
        upLo += e1.lo;
        upHi += e1.hi;
      }
    }
    if (i < perRow) {
      let d0 = dots(w[base + i], xBase, i, k4);
      lo += d0.lo;
      hi += d0.hi;
      if (GATED) {
        let e0 = dots(w[baseUp + i], xBase, i, k4);
        upLo += e0.lo;
        upHi += e0.hi;
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    var a: f32;
    var u: f32;
    if (r < 4u) { a = lo[r]; u = upLo[r]; } else { a = hi[r - 4u]; u = upHi[r - 4u]; }
    partial[r * WG + li] = a;
    if (GATED) { partial[(8u + r) * WG + li] = u; }
  }
  workgroupBarrier();
  if (li < outs * ROWS) {
    let oo = li / ROWS;
    let r = li % ROWS;
    let nn = wg * outs + oo;
    if (nn < P.n && r0 + r < P.rows) {
      var s = 0.0;
      var su = 0.0;
      for (var t = 0u; t < TPR; t++) {
        s += partial[r * WG + oo * TPR + t];
        if (GATED) { su += partial[(8u + r) * WG + oo * TPR + t]; }
      }
      var v = s;
      if (NORM) {
        v *= invRms[r];
        su *= invRms[r];
      }
      if (BIAS) { v += b[nn]; }
      if (GATED) { v = silu(v) * su; } else if (SILU) { v = silu(v); }
      if (RESIDUAL) { v += res[(r0 + r) * P.resDim + nn % P.resDim]; }
      y[(r0 + r) * P.n + nn] = v;
    }
  }
}
