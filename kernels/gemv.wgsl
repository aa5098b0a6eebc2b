// Matrix-vector product for a few rows (decode and verify): for r < rows, n < N
//   y[r, n] = act(W[n, :] . x[r, :] + b[n]) + res[r, n % resDim]        (each part optional)
//   GATED:  y[r, n] = silu(W[n, :] . x[r, :]) * (W[N + n, :] . x[r, :])  (SwiGLU, W = [gate; up])
// Memory bound, so: 16-byte weight loads, U of them in flight per thread and output row, RO
// output rows per thread so that one load of x serves RO rows of W. TPR threads share an output
// row and reduce through workgroup memory in a fixed order: a thread's slice of K depends only on
// TPR, so a row's result has the same bits whatever ROWS, RO and U are (speculative == greedy).
struct Params { n: u32, k: u32, rows: u32, resDim: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;  // [rows, K]
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;  // [N or 2N, K]: f32 bits or 8 f16
@group(0) @binding(4) var<storage, read> b: array<f32>;        // [N] (BIAS)
@group(0) @binding(5) var<storage, read> res: array<f32>;      // [rows, resDim] (RESIDUAL)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [rows, N]
override F16: bool = false;
override ROWS: u32 = 1u;   // query rows per workgroup; the dispatch's y dimension walks row groups
override RO: u32 = 1u;     // output rows per thread; RO * ROWS <= 8
override TPR: u32 = 32u;   // threads per output row
override U: u32 = 4u;      // K steps unrolled per loop iteration
override GATED: bool = false;
override BIAS: bool = false;
override SILU: bool = false;
override RESIDUAL: bool = false;
const WG: u32 = 256u;
var<workgroup> partial: array<f32, 4096>;  // [2 (gated)][RO * ROWS <= 8][WG]

fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }

// W[row, 8i .. 8i+8) (f16) or W[row, 4i .. 4i+4) (f32) as two vec4 (the second is zero for f32).
fn weights(row: u32, i: u32, perRow: u32) -> array<vec4f, 2> {
  let v = w[row * perRow + i];
  if (F16) {
    return array<vec4f, 2>(vec4f(unpack2x16float(v.x), unpack2x16float(v.y)),
                           vec4f(unpack2x16float(v.z), unpack2x16float(v.w)));
  }
  return array<vec4f, 2>(bitcast<vec4f>(v), vec4f(0.0));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let groups = WG / TPR;
  let group = li / TPR;
  let lane = li % TPR;
  let wg = wid.x + wid.z * nwg.x;
  let n0 = (wg * groups + group) * RO;  // this thread's first output row
  let r0 = wid.y * ROWS;
  var perRow = P.k / 4u;  // vec4<u32> per weight row
  if (F16) { perRow = P.k / 8u; }
  var acc: array<f32, 8>;    // [RO][ROWS]
  var accUp: array<f32, 8>;
  for (var i0 = lane; i0 < perRow; i0 += TPR * U) {
    for (var u = 0u; u < U; u++) {
      let i = i0 + u * TPR;
      if (i < perRow) {
        for (var ro = 0u; ro < RO; ro++) {
          let n = n0 + ro;
          if (n < P.n) {
            let wv = weights(n, i, perRow);
            var uv = array<vec4f, 2>(vec4f(0.0), vec4f(0.0));
            if (GATED) { uv = weights(P.n + n, i, perRow); }
            for (var r = 0u; r < ROWS; r++) {
              if (r0 + r < P.rows) {
                var d: f32;
                var du = 0.0;
                if (F16) {
                  let xa = x[(r0 + r) * (P.k / 4u) + 2u * i];
                  let xb = x[(r0 + r) * (P.k / 4u) + 2u * i + 1u];
                  d = dot(wv[0], xa) + dot(wv[1], xb);
                  if (GATED) { du = dot(uv[0], xa) + dot(uv[1], xb); }
                } else {
                  let xv = x[(r0 + r) * (P.k / 4u) + i];
                  d = dot(wv[0], xv);
                  if (GATED) { du = dot(uv[0], xv); }
                }
                acc[ro * ROWS + r] += d;
                if (GATED) { accUp[ro * ROWS + r] += du; }
              }
            }
          }
        }
      }
    }
  }
  for (var j = 0u; j < RO * ROWS; j++) {
    partial[j * WG + li] = acc[j];
    if (GATED) { partial[(8u + j) * WG + li] = accUp[j]; }
  }
  workgroupBarrier();
  // Thread t < groups * RO * ROWS finishes output (group g, row ro, query row r).
  if (li < groups * RO * ROWS) {
    let g = li / (RO * ROWS);
    let j = li % (RO * ROWS);
    let ro = j / ROWS;
    let r = j % ROWS;
    let n = (wg * groups + g) * RO + ro;
    if (n < P.n && r0 + r < P.rows) {
      var s = 0.0;
      var su = 0.0;
      for (var t = 0u; t < TPR; t++) {
        s += partial[j * WG + g * TPR + t];
        if (GATED) { su += partial[(8u + j) * WG + g * TPR + t]; }
      }
      var v = s;
      if (BIAS) { v += b[n]; }
      if (GATED) { v = silu(v) * su; } else if (SILU) { v = silu(v); }
      if (RESIDUAL) { v += res[(r0 + r) * P.resDim + n % P.resDim]; }
      y[(r0 + r) * P.n + n] = v;
    }
  }
}
