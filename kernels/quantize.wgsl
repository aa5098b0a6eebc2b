// Quantizes f32 rows into ahead's q8 or q4 layout: blocks of 32 weights along a row, one f16
// scale d per block (the rules of GGUF's Q8_0 and Q4_0):
//   q8: d = absmax / 127,                     q = round(x / d) in [-127, 127],        x ~ q d
//   q4: d = m / -8 (m: the largest-magnitude value), q = clamp(floor(x / d + 8.5), 0, 15), x ~ (q - 8) d
// d is rounded to f16 first and q computed with that rounded d (times 1 / d), so dequantizing
// reads back exactly q d. Layout of a part buffer, in words: the values, row r from r K/4 (q8:
// byte e of word w is weight 4w + e) or r K/8 (q4: nibble e of word w is weight 8w + e); then the
// scales, row r from scaleBase + r scaleStride, block b in half (b & 1) of word b >> 1. Rows
// dstRow .. dstRow + rows - 1 are written. One thread per pair of blocks of a row, so every word
// has one writer.
struct Params { rows: u32, k: u32, dstRow: u32, scaleBase: u32, scaleStride: u32, perX: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;        // [rows, k]
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;  // the part buffer
override Q4: bool = false;

// v rounded to f16, decoded by hand: NVIDIA's compiler folds unpack2x16float(pack2x16float(v))
// back to v, and codes computed with the unrounded scale came out one step off (H200).
fn f16round(v: f32) -> f32 {
  let h = pack2x16float(vec2f(v, 0.0)) & 0xffffu;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  var a = bitcast<f32>(((e + 112u) << 23u) | (m << 13u));  // normal: 2^(e-15) (1 + m / 1024)
  if (e == 0u) { a = f32(m) * 5.9604645e-8; }              // subnormal: m 2^-24
  if (e == 31u) { a = bitcast<f32>(0x7f800000u | (m << 13u)); }
  return select(a, -a, (h & 0x8000u) != 0u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let blocks = P.k / 32u;
  let pairs = (blocks + 1u) / 2u;
  let t = gid.x + gid.y * P.perX;
  let r = t / pairs;
  let pair = t % pairs;
  if (r >= P.rows) { return; }
  let row = P.dstRow + r;
  var scales = 0u;
  for (var h = 0u; h < 2u; h++) {
    let b = 2u * pair + h;
    if (b >= blocks) { break; }
    let base = r * P.k + b * 32u;
    var amax = 0.0;
    var m = 0.0;
    for (var e = 0u; e < 32u; e++) {
      let v = src[base + e];
      if (abs(v) > amax) { amax = abs(v); m = v; }
    }
    var d = amax / 127.0;
    if (Q4) { d = m / -8.0; }
    d = f16round(d);
    var inv = 0.0;
    if (d != 0.0) { inv = 1.0 / d; }
    scales |= (pack2x16float(vec2f(d, 0.0)) & 0xffffu) << (16u * h);
    if (Q4) {
      for (var w = 0u; w < 4u; w++) {
        var word = 0u;
        for (var e = 0u; e < 8u; e++) {
          let q = u32(clamp(floor(src[base + 8u * w + e] * inv + 8.5), 0.0, 15.0));
          word |= q << (4u * e);
        }
        dst[row * (P.k / 8u) + b * 4u + w] = word;
      }
    } else {
      for (var w = 0u; w < 8u; w++) {
        var word = 0u;
        for (var e = 0u; e < 4u; e++) {
          let q = i32(clamp(round(src[base + 4u * w + e] * inv), -127.0, 127.0));
          word |= (bitcast<u32>(q) & 0xffu) << (8u * e);
        }
        dst[row * (P.k / 4u) + b * 8u + w] = word;
      }
    }
  }
  dst[P.scaleBase + row * P.scaleStride + pair] = scales;
}
