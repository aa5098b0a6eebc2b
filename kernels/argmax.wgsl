// Greedy pick: out[outOffset + r] = argmax_j logits[r, j]; ties go to the lowest index, like torch.
struct Params { rows: u32, n: u32, outOffset: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;   // [rows, n]
@group(0) @binding(3) var<storage, read_write> out: array<u32>; // [outOffset + rows]
var<workgroup> bestV: array<f32, 256>;
var<workgroup> bestI: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let r = wid.x;
  var v = -3.4e38;
  var idx = 0xffffffffu;
  for (var j = li; j < P.n; j += 256u) {
    let x = logits[r * P.n + j];
    if (x > v || idx == 0xffffffffu) { v = x; idx = j; }
  }
  bestV[li] = v;
  bestI[li] = idx;
  workgroupBarrier();
  for (var o = 128u; o > 0u; o >>= 1u) {
    if (li < o) {
      let v2 = bestV[li + o];
      let i2 = bestI[li + o];
      if (i2 != 0xffffffffu && (bestI[li] == 0xffffffffu || v2 > bestV[li] ||
          (v2 == bestV[li] && i2 < bestI[li]))) {
        bestV[li] = v2;
        bestI[li] = i2;
      }
    }
    workgroupBarrier();
  }
  if (li == 0u) { out[P.outOffset + r] = bestI[0]; }
}
