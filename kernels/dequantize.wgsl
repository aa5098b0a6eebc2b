// Dequantizes rows of a q8 or q4 part buffer (quantize.wgsl's layout) to f16 pairs, for the
// tiled matrix product of prefill and long verify blocks: out[r, i] = q d of weight i of row r
// (q8: q d; q4: (q - 8) d). One thread per 8 weights: it writes 4 whole words.
struct Params { rows: u32, k: u32, scaleBase: u32, scaleStride: u32, perX: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> w: array<u32>;          // the part buffer
@group(0) @binding(3) var<storage, read_write> out: array<u32>;  // [rows, k / 2] f16 pairs
override Q4: bool = false;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let units = P.k / 8u;
  let t = gid.x + gid.y * P.perX;
  let r = t / units;
  let u = t % units;
  if (r >= P.rows) { return; }
  let b = u / 4u;  // the block of 32 holding these 8 weights
  let d = unpack2x16float(w[P.scaleBase + r * P.scaleStride + (b >> 1u)])[b & 1u];
  var lo: vec4f;
  var hi: vec4f;
  if (Q4) {
    let v = vec4u(w[r * units + u]);
    lo = vec4f(vec4i((v >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u)) - vec4i(8));
    hi = vec4f(vec4i((v >> vec4u(16u, 20u, 24u, 28u)) & vec4u(15u)) - vec4i(8));
  } else {
    let i = r * (P.k / 4u) + 2u * u;
    lo = vec4f(vec4i(vec4u(w[i]) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
    hi = vec4f(vec4i(vec4u(w[i + 1u]) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
  }
  lo *= d;
  hi *= d;
  let o = r * (P.k / 2u) + 4u * u;
  out[o] = pack2x16float(lo.xy);
  out[o + 1u] = pack2x16float(lo.zw);
  out[o + 2u] = pack2x16float(hi.xy);
  out[o + 3u] = pack2x16float(hi.zw);
}
