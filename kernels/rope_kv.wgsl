// RoPE (Llama convention: rotate_half pairs i and i + headDim/2) on the query and key parts of a
// fused qkv row, then the rotated keys and the values go into the KV cache at the row's position
// positions[r]. Queries are rotated in place. cos/sin come from a table built on the host in f64.
// With CACHE = false (training over whole sequences, where the keys are read from qkv itself)
// the keys are rotated in place too and nothing is written to the caches. With KV_F16 the cache
// holds f16 pairs (dims 2i, 2i + 1 in one word), so the thread of an even pair or value index
// also stores its odd neighbour.
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, capacity: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;          // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> positions: array<u32>;     // [rows]
@group(0) @binding(3) var<storage, read> rope: array<vec2f>;        // [capacity, headDim/2]: (cos, sin)
@group(0) @binding(4) var<storage, read_write> qkv: array<f32>;     // [rows, (nHeads + 2 nKvHeads) headDim]
@group(0) @binding(5) var<storage, read_write> kCache: array<u32>;  // [capacity, nKvHeads, headDim]: f32 bits or f16 pairs
@group(0) @binding(6) var<storage, read_write> vCache: array<u32>;  // [capacity, nKvHeads, headDim]: f32 bits or f16 pairs

override CACHE: bool = true;
override KV_F16: bool = false;

// RoPE of pair i of the head at `at` in row `row`: (a, b) -> (a cos - b sin, b cos + a sin).
fn rotate(row: u32, at: u32, i: u32, pos: u32) -> vec2f {
  let half = P.headDim / 2u;
  let cs = rope[pos * half + i];
  let a = qkv[row + at + i];
  let b = qkv[row + at + i + half];
  return vec2f(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let r = gid.y;
  if (r >= P.rows) { return; }
  let pos = positions[r];
  if (pos >= P.capacity) { return; }
  let half = P.headDim / 2u;
  let nPairs = (P.nHeads + P.nKvHeads) * half;
  let stride = (P.nHeads + 2u * P.nKvHeads) * P.headDim;
  let row = r * stride;
  let t = gid.x;
  if (t < nPairs) {
    let head = t / half;   // query heads first, then key heads
    let i = t % half;
    let at = head * P.headDim;
    let rot = rotate(row, at, i, pos);
    if (head < P.nHeads || !CACHE) {
      qkv[row + at + i] = rot.x;
      qkv[row + at + i + half] = rot.y;
    } else {
      let c = (pos * P.nKvHeads + head - P.nHeads) * P.headDim;
      if (!KV_F16) {
        kCache[c + i] = bitcast<u32>(rot.x);
        kCache[c + i + half] = bitcast<u32>(rot.y);
      } else if (i % 2u == 0u) {
        let next = rotate(row, at, i + 1u, pos);
        kCache[(c + i) / 2u] = pack2x16float(vec2f(rot.x, next.x));
        kCache[(c + i + half) / 2u] = pack2x16float(vec2f(rot.y, next.y));
      }
    }
  } else if (CACHE && t < nPairs + P.nKvHeads * P.headDim) {
    let e = t - nPairs;
    let c = pos * P.nKvHeads * P.headDim + e;
    let src = row + (P.nHeads + P.nKvHeads) * P.headDim + e;
    if (!KV_F16) {
      vCache[c] = bitcast<u32>(qkv[src]);
    } else if (e % 2u == 0u) {
      vCache[c / 2u] = pack2x16float(vec2f(qkv[src], qkv[src + 1u]));
    }
  }
}
