// Matrix-vector product for a few rows (decode and verify): for r < rows, n < N
//   y[r, n] = act(W[n, :] . x[r, :] + b[n]) + res[r, n % resDim]        (each part optional)
//   GATED:  y[r, n] = silu(W[n, :] . x[r, :]) * (W[N + n, :] . x[r, :])  (SwiGLU, W = [gate; up])
// Memory bound: each weight is read once for all ROWS rows, 16 bytes per load; TPR threads share
// an output row and reduce through workgroup memory in a fixed order, so a row's result does not
// depend on how many rows ride along (speculative == greedy bit for bit).
struct Params { n: u32, k: u32, rows: u32, resDim: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;  // [rows, K]
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;  // [N or 2N, K]: f32 bits or 8 f16
@group(0) @binding(4) var<storage, read> b: array<f32>;        // [N] (BIAS)
@group(0) @binding(5) var<storage, read> res: array<f32>;      // [rows, resDim] (RESIDUAL)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [rows, N]
override F16: bool = false;
override ROWS: u32 = 1u;   // rows per workgroup (<= 8); the dispatch's y dimension walks row groups
override TPR: u32 = 32u;   // threads per output row
override GATED: bool = false;
override BIAS: bool = false;
override SILU: bool = false;
override RESIDUAL: bool = false;
const WG: u32 = 256u;
var<workgroup> partial: array<f32, 4096>;  // [2 (gated)][8 rows][WG]

fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let outsPerWg = WG / TPR;
  let o = li / TPR;
  let lane = li % TPR;
  let n = (wid.x + wid.z * nwg.x) * outsPerWg + o;
  let r0 = wid.y * ROWS;
  let valid = n < P.n;
  var acc: array<f32, 8>;
  var accUp: array<f32, 8>;
  if (valid) {
    if (F16) {
      let k8 = P.k / 8u;
      let base = n * k8;
      let baseUp = (P.n + n) * k8;
      for (var i = lane; i < k8; i += TPR) {
        let wv = w[base + i];
        let wa = vec4f(unpack2x16float(wv.x), unpack2x16float(wv.y));
        let wb = vec4f(unpack2x16float(wv.z), unpack2x16float(wv.w));
        var ua = vec4f(0.0);
        var ub = vec4f(0.0);
        if (GATED) {
          let uv = w[baseUp + i];
          ua = vec4f(unpack2x16float(uv.x), unpack2x16float(uv.y));
          ub = vec4f(unpack2x16float(uv.z), unpack2x16float(uv.w));
        }
        for (var r = 0u; r < ROWS; r++) {
          if (r0 + r < P.rows) {
            let xi = (r0 + r) * (P.k / 4u) + 2u * i;
            let xa = x[xi];
            let xb = x[xi + 1u];
            acc[r] += dot(wa, xa) + dot(wb, xb);
            if (GATED) { accUp[r] += dot(ua, xa) + dot(ub, xb); }
          }
        }
      }
    } else {
      let k4 = P.k / 4u;
      let base = n * k4;
      let baseUp = (P.n + n) * k4;
      for (var i = lane; i < k4; i += TPR) {
        let wv = bitcast<vec4f>(w[base + i]);
        var uv = vec4f(0.0);
        if (GATED) { uv = bitcast<vec4f>(w[baseUp + i]); }
        for (var r = 0u; r < ROWS; r++) {
          if (r0 + r < P.rows) {
            let xv = x[(r0 + r) * k4 + i];
            acc[r] += dot(wv, xv);
            if (GATED) { accUp[r] += dot(uv, xv); }
          }
        }
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    partial[r * WG + li] = acc[r];
    if (GATED) { partial[(8u + r) * WG + li] = accUp[r]; }
  }
  workgroupBarrier();
  if (li < outsPerWg * ROWS) {
    let oo = li / ROWS;
    let r = li % ROWS;
    let nn = (wid.x + wid.z * nwg.x) * outsPerWg + oo;
    if (nn < P.n && r0 + r < P.rows) {
      var s = 0.0;
      var su = 0.0;
      for (var j = 0u; j < TPR; j++) {
        s += partial[r * WG + oo * TPR + j];
        if (GATED) { su += partial[(8u + r) * WG + oo * TPR + j]; }
      }
      var v = s;
      if (BIAS) { v += b[nn]; }
      if (GATED) { v = silu(v) * su; } else if (SILU) { v = silu(v); }
      if (RESIDUAL) { v += res[(r0 + r) * P.resDim + nn % P.resDim]; }
      y[(r0 + r) * P.n + nn] = v;
    }
  }
}
