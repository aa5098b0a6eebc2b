// Softmax cross-entropy over the vocabulary, fused with its gradient, one workgroup per row:
//   loss[r] = logsumexp(logits[r, :]) - logits[r, t],   t = targets[targetsOffset + r]
//   dlogits[r, j] = (softmax(logits[r, :])_j - [j == t]) * scale
// Pass 1 streams the row once with an online softmax (each thread keeps a running max m and a sum
// s rescaled whenever m grows), then a tree merges the threads' (m, s) pairs; pass 2 writes the
// gradient. Any vocabulary size works: a thread strides over the row in steps of WG. A target
// >= vocab (e.g. 0xffffffff) marks a row without a target: zero loss, zero gradient.
// In place (IN_PLACE) the gradient overwrites the logits; the target's logit is read before the
// first barrier, and every write comes after the last, so no thread reads a value already
// overwritten. The scale is a uniform times, with SCALE_BUFFER, a float the GPU reads (e.g.
// 1/targets, written by the host with each batch, so a program built once serves every batch).
struct Params { rows: u32, vocab: u32, targetsOffset: u32, scale: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;         // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> targets: array<u32>;      // [targetsOffset + rows]
@group(0) @binding(3) var<storage, read> scaleBy: array<f32>;      // [1] when SCALE_BUFFER
@group(0) @binding(4) var<storage, read_write> logits: array<f32>; // [rows, vocab]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;    // [rows, vocab] unless IN_PLACE
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;   // [rows]
override WG: u32 = 256u; // a power of two
override IN_PLACE: bool = true;
override SCALE_BUFFER: bool = false;
// The lowest finite f32: a thread that saw no logit merges as (LOWEST, 0) without exp(-inf + inf).
const LOWEST: f32 = -3.40282347e38;
var<workgroup> ms: array<vec2f, WG>;
var<workgroup> targetLogit: f32;

fn store(i: u32, v: f32) {
  if (IN_PLACE) { logits[i] = v; } else { out[i] = v; }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let r = wid.x + wid.y * nwg.x;
  if (r >= P.rows) { return; }
  let base = r * P.vocab;
  let t = targets[P.targetsOffset + r];
  if (t >= P.vocab) {
    for (var j = li; j < P.vocab; j += WG) { store(base + j, 0.0); }
    if (li == 0u) { loss[r] = 0.0; }
    return;
  }
  var m = LOWEST;
  var s = 0.0;
  for (var j = li; j < P.vocab; j += WG) {
    let v = logits[base + j];
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  if (li == 0u) { targetLogit = logits[base + t]; }
  ms[li] = vec2f(m, s);
  workgroupBarrier();
  for (var o = WG / 2u; o > 0u; o >>= 1u) {
    if (li < o) {
      let a = ms[li];
      let b = ms[li + o];
      let mm = max(a.x, b.x);
      ms[li] = vec2f(mm, a.y * exp(a.x - mm) + b.y * exp(b.x - mm));
    }
    workgroupBarrier();
  }
  // logsumexp = m + log(s), kept apart: v - m is exact for the logits that matter, where
  // v - (m + log(s)) would round m + log(s) to the f32 spacing of m (1e-3 at m = 1e4).
  let m0 = ms[0].x;
  let ls = log(ms[0].y);
  if (li == 0u) { loss[r] = (m0 - targetLogit) + ls; }
  var scale = bitcast<f32>(P.scale);
  if (SCALE_BUFFER) { scale *= scaleBy[0]; }
  for (var j = li; j < P.vocab; j += WG) {
    var p = exp((logits[base + j] - m0) - ls);
    if (j == t) { p -= 1.0; }
    store(base + j, p * scale);
  }
}
