// AdamW, pass 2 of 2: one tensor's update, as torch.optim.AdamW computes it (single-tensor
// path, decoupled decay): g = clip grad; w *= 1 - lr wd; m = lerp(m, g, 1 - beta1);
// v = beta2 v + (1 - beta2) g^2; w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
// lr, clip and the bias corrections come from the state adamw_schedule.wgsl wrote; a skipped
// step leaves everything as it was.
struct Params { n: u32, oneMinusBeta1: f32, beta2: f32, oneMinusBeta2: f32, eps: f32, weightDecay: f32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> state: array<u32>;     // [16] OPT words (adamw.ts)
@group(0) @binding(3) var<storage, read_write> w: array<f32>;   // [n] f32 master weights
@group(0) @binding(4) var<storage, read> grad: array<f32>;      // [n]
@group(0) @binding(5) var<storage, read_write> m: array<f32>;   // [n] first moment
@group(0) @binding(6) var<storage, read_write> v: array<f32>;   // [n] second moment
const LR = 1u;
const CLIP = 3u;
const BIAS1 = 4u;
const BIAS2_SQRT = 5u;
const APPLIED = 6u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u || state[APPLIED] == 0u) { return; }
  let i = (wid.y * nwg.x + wid.x) * 256u + li;
  if (i >= P.n) { return; }
  let lr = bitcast<f32>(state[LR]);
  let g = grad[i] * bitcast<f32>(state[CLIP]);
  // PyTorch's lerp with a weight under 0.5: m + weight (g - m).
  let mi = m[i] + P.oneMinusBeta1 * (g - m[i]);
  let vi = v[i] * P.beta2 + P.oneMinusBeta2 * (g * g);
  m[i] = mi;
  v[i] = vi;
  let decayed = w[i] * (1.0 - lr * P.weightDecay);
  let denom = sqrt(vi) / bitcast<f32>(state[BIAS2_SQRT]) + P.eps;
  w[i] = decayed - lr / bitcast<f32>(state[BIAS1]) * (mi / denom);
}
