// The input of a sequential MTP module, before its projection: for row r,
//   out[r] = [RMSNorm(h_r) gh ; RMSNorm(e_r) ge]   (HIDDEN_FIRST: MiMo's order)
//   out[r] = [RMSNorm(e_r) ge ; RMSNorm(h_r) gh]   (otherwise: DeepSeek-V3's order)
// e_r is the token's embedding (zeros for none); h_r is row r of `h` (FROM_HISTORY false: the
// trunk's rows of the block), or row pos[r] + shift of `h` (a module's outputs by position); with
// PRE_NORM it is first normed by gp (h_r = RMSNorm(h_r) gp: the trunk's final norm, or MiMo's
// final_layernorm of the module before). One workgroup per row.
struct Params { rows: u32, dim: u32, eps: u32, shift: i32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> pos: array<u32>;       // [rows]
@group(0) @binding(3) var<storage, read> h: array<f32>;         // [rows or capacity, dim]
@group(0) @binding(4) var<storage, read> e: array<f32>;         // [rows, dim]
@group(0) @binding(5) var<storage, read> gh: array<f32>;        // [dim]
@group(0) @binding(6) var<storage, read> ge: array<f32>;        // [dim]
@group(0) @binding(7) var<storage, read> gp: array<f32>;        // [dim]
@group(0) @binding(8) var<storage, read_write> out: array<f32>; // [rows, 2 dim]
override FROM_HISTORY: bool = false;
override PRE_NORM: bool = false;
override HIDDEN_FIRST: bool = true;
var<workgroup> sh: array<f32, 256>;
var<workgroup> se: array<f32, 256>;

fn sumBoth(li: u32) {
  workgroupBarrier();
  for (var o = 128u; o > 0u; o >>= 1u) {
    if (li < o) {
      sh[li] += sh[li + o];
      se[li] += se[li + o];
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let r = wid.x;
  var hr = r;
  if (FROM_HISTORY) { hr = u32(i32(pos[r]) + P.shift); }
  let hb = hr * P.dim;
  let eb = r * P.dim;
  var a = 0.0;
  var b = 0.0;
  for (var i = li; i < P.dim; i += 256u) {
    let x = h[hb + i];
    let y = e[eb + i];
    a += x * x;
    b += y * y;
  }
  sh[li] = a;
  se[li] = b;
  sumBoth(li);
  let eps = bitcast<f32>(P.eps);
  var pre = 1.0;  // h_r's first norm, with PRE_NORM
  var scaleH = inverseSqrt(sh[0] / f32(P.dim) + eps);
  let scaleE = inverseSqrt(se[0] / f32(P.dim) + eps);
  if (PRE_NORM) {
    pre = scaleH;
    workgroupBarrier();
    var c = 0.0;
    for (var i = li; i < P.dim; i += 256u) { let x = h[hb + i] * pre * gp[i]; c += x * x; }
    sh[li] = c;
    se[li] = 0.0;
    sumBoth(li);
    scaleH = inverseSqrt(sh[0] / f32(P.dim) + eps);
  }
  var oh = 0u;
  var oe = P.dim;
  if (!HIDDEN_FIRST) { oh = P.dim; oe = 0u; }
  let ob = r * 2u * P.dim;
  for (var i = li; i < P.dim; i += 256u) {
    var x = h[hb + i];
    if (PRE_NORM) { x = x * pre * gp[i]; }
    out[ob + oh + i] = x * scaleH * gh[i];
    out[ob + oe + i] = e[eb + i] * scaleE * ge[i];
  }
}
