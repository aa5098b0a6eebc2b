// Greedy pick: out[outOffset + r] = argmax_j logits[r, j]; ties go to the lowest index, like torch.
// One workgroup of 1024 threads per row; each thread keeps four independent loads in flight, so a
// 32k vocabulary is a few rounds of memory latency, not 125.
struct Params { rows: u32, n: u32, outOffset: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> logits: array<f32>;   // [rows, n]
@group(0) @binding(3) var<storage, read_write> out: array<u32>; // [outOffset + rows]
const WG: u32 = 1024u;
const NONE: u32 = 0xffffffffu;
var<workgroup> bestV: array<f32, 1024>;
var<workgroup> bestI: array<u32, 1024>;

// (v, i) beats (bv, bi) if larger, or equal with a lower index; NONE marks "no value yet".
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

@compute @workgroup_size(1024)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let row = wid.x * P.n;
  var v = 0.0;
  var idx = NONE;
  for (var j = li; j < P.n; j += 4u * WG) {
    // Indices j < j + WG < j + 2 WG < j + 3 WG: scanning them in order keeps the first maximum.
    let a = logits[row + j];
    let b = logits[row + min(j + WG, P.n - 1u)];
    let c = logits[row + min(j + 2u * WG, P.n - 1u)];
    let d = logits[row + min(j + 3u * WG, P.n - 1u)];
    if (better(a, j, v, idx)) { v = a; idx = j; }
    if (j + WG < P.n && better(b, j + WG, v, idx)) { v = b; idx = j + WG; }
    if (j + 2u * WG < P.n && better(c, j + 2u * WG, v, idx)) { v = c; idx = j + 2u * WG; }
    if (j + 3u * WG < P.n && better(d, j + 3u * WG, v, idx)) { v = d; idx = j + 3u * WG; }
  }
  bestV[li] = v;
  bestI[li] = idx;
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o && better(bestV[li + o], bestI[li + o], bestV[li], bestI[li])) {
      bestV[li] = bestV[li + o];
      bestI[li] = bestI[li + o];
    }
    workgroupBarrier();
  }
  if (li == 0u) { out[P.outOffset + wid.x] = bestI[0]; }
}
