// RMSNorm backward for the input, one workgroup per row. With s = 1/sqrt(mean(x^2) + eps) and
// y = x s g, the chain rule through s gives
//   dx = s g dy - x s^3 / dim * sum(g dy x)
// so one pass reduces sum(x^2) and sum(g dy x) together, and a second writes dx. The row's s goes
// to rstd, so the weight gradient (norm_weight_backward.wgsl) reads it instead of re-reducing x.
// ACCUMULATE adds dx into what is there: in a pre-norm layer the residual stream's gradient and
// the norm's input gradient meet in the same tensor.
struct Params { rows: u32, dim: u32, eps: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> x: array<f32>;          // [rows, dim] the forward's input
@group(0) @binding(3) var<storage, read> g: array<f32>;          // [dim]
@group(0) @binding(4) var<storage, read> dy: array<f32>;         // [rows, dim]
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;   // [rows, dim]
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>; // [rows]
override WG: u32 = 256u; // a power of two (the tree reduction halves it)
override ACCUMULATE: bool = false;
var<workgroup> partial: array<vec2f, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let r = wid.x + wid.y * nwg.x;
  if (r >= P.rows) { return; }
  let base = r * P.dim;
  var s = vec2f(0.0);
  for (var e = li; e < P.dim; e += WG) {
    let v = x[base + e];
    s += vec2f(v * v, g[e] * dy[base + e] * v);
  }
  partial[li] = s;
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o) { partial[li] += partial[li + o]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0].x / f32(P.dim) + bitcast<f32>(P.eps));
  let coef = scale * scale * scale * partial[0].y / f32(P.dim);
  for (var e = li; e < P.dim; e += WG) {
    var v = scale * g[e] * dy[base + e] - coef * x[base + e];
    if (ACCUMULATE) { v += dx[base + e]; }
    dx[base + e] = v;
  }
  if (li == 0u) { rstd[r] = scale; }
}
