// RoPE (Llama convention: rotate_half pairs i and i + headDim/2) on the query and key parts of a
// fused qkv row, then the rotated keys and the values go into the KV cache at the row's position
// positions[r]. Queries are rotated in place. cos/sin come from a table built on the host in f64.
// With CACHE = false (training over whole sequences, where the keys are read from qkv itself)
// the keys are rotated in place too and nothing is written to the caches.
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, capacity: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;          // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> positions: array<u32>;     // [rows]
@group(0) @binding(3) var<storage, read> rope: array<vec2f>;        // [capacity, headDim/2]: (cos, sin)
@group(0) @binding(4) var<storage, read_write> qkv: array<f32>;     // [rows, (nHeads + 2 nKvHeads) headDim]
@group(0) @binding(5) var<storage, read_write> kCache: array<f32>;  // [capacity, nKvHeads, headDim]
@group(0) @binding(6) var<storage, read_write> vCache: array<f32>;  // [capacity, nKvHeads, headDim]

override CACHE: bool = true;

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
    let cs = rope[pos * half + i];
    let a = qkv[row + head * P.headDim + i];
    let b = qkv[row + head * P.headDim + i + half];
    let ra = a * cs.x - b * cs.y;
    let rb = b * cs.x + a * cs.y;
    if (head < P.nHeads || !CACHE) {
      qkv[row + head * P.headDim + i] = ra;
      qkv[row + head * P.headDim + i + half] = rb;
    } else {
      let c = (pos * P.nKvHeads + head - P.nHeads) * P.headDim;
      kCache[c + i] = ra;
      kCache[c + i + half] = rb;
    }
  } else if (CACHE && t < nPairs + P.nKvHeads * P.headDim) {
    let e = t - nPairs;
    vCache[pos * P.nKvHeads * P.headDim + e] = qkv[row + (P.nHeads + P.nKvHeads) * P.headDim + e];
  }
}
