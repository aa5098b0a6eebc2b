// AdamW, pass 1 of 2 (one invocation per step, after the gradient norm): decides whether the
// step runs, and writes what every tensor's update reads into the optimizer state, so that the
// host only submits. A NaN or infinite norm skips the step (weights, moments and the step count
// stay); otherwise it computes the clip factor, the step's learning rate (linear warmup, then
// cosine to minLr at totalSteps) and the bias corrections, and counts the step.
struct Params {
  maxLr: f32, minLr: f32, warmupSteps: u32, totalSteps: u32, maxNorm: f32,
  lnBeta1: f32, lnBeta2: f32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;        // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> norm: array<f32>;        // [1] global gradient norm
@group(0) @binding(3) var<storage, read_write> state: array<u32>; // [16] OPT words (adamw.ts)
const STEP = 0u;           // steps applied so far
const LR = 1u;             // f32: learning rate of the last step
const NORM = 2u;           // f32: gradient norm of the last step, before clipping
const CLIP = 3u;           // f32: factor the gradients were multiplied by
const BIAS1 = 4u;          // f32: 1 - beta1^t
const BIAS2_SQRT = 5u;     // f32: sqrt(1 - beta2^t)
const APPLIED = 6u;        // 1: the last step ran; 0: skipped
const SKIPPED = 7u;        // steps skipped so far
const FIRST_SKIPPED = 8u;  // step count when the first skip happened
const PI = 3.14159265358979;

// 1 - exp(x) for x <= 0 with a small relative error: 1 - beta2^t is about 1e-3 at t = 1, where
// 1 - exp(x) would cancel, and WGSL's pow and log only bound their absolute error.
fn oneMinusExp(x: f32) -> f32 {
  if (x < -0.5) { return 1.0 - exp(x); }
  var s = 1.0;  // Taylor series of expm1(x) / x in Horner form; |x|^11 / 11! < 2e-11
  for (var k = 10.0; k >= 2.0; k -= 1.0) { s = 1.0 + x / k * s; }
  return -x * s;
}

// sin(y) for y in [0, pi/2] from its Taylor series (error < 1e-11): WGSL's sin only promises an
// absolute error of 2^-11, far from the 1e-7 of the rest of the step.
fn sinSmall(y: f32) -> f32 {
  let y2 = y * y;
  var s = 1.0;
  for (var k = 8.0; k >= 1.0; k -= 1.0) { s = 1.0 - y2 / ((2.0 * k) * (2.0 * k + 1.0)) * s; }
  return y * s;
}

fn learningRate(i: u32) -> f32 {
  if (i < P.warmupSteps) { return P.maxLr * f32(i + 1u) / f32(P.warmupSteps); }
  if (i >= P.totalSteps) { return P.minLr; }
  // (1 + cos(pi f)) / 2 = sin(pi (1 - f) / 2)^2, from the steps left: exact near the end of the
  // decay, where 1 + cos would cancel.
  let left = f32(P.totalSteps - i) / f32(P.totalSteps - P.warmupSteps);
  let c = sinSmall(PI / 2.0 * left);
  return P.minLr + (P.maxLr - P.minLr) * (c * c);
}

@compute @workgroup_size(1)
fn main() {
  if (done[0] != 0u) { return; }
  let n = norm[0];
  state[NORM] = bitcast<u32>(n);
  // By the bits: compilers may assume floats are finite and fold isNan-style comparisons away.
  if ((bitcast<u32>(n) & 0x7f800000u) == 0x7f800000u) {
    if (state[SKIPPED] == 0u) { state[FIRST_SKIPPED] = state[STEP]; }
    state[SKIPPED] += 1u;
    state[APPLIED] = 0u;
    return;
  }
  let i = state[STEP];
  let t = f32(i + 1u);
  var clip = 1.0;
  if (P.maxNorm > 0.0) { clip = min(1.0, P.maxNorm / (n + 1e-6)); }
  state[LR] = bitcast<u32>(learningRate(i));
  state[CLIP] = bitcast<u32>(clip);
  state[BIAS1] = bitcast<u32>(oneMinusExp(t * P.lnBeta1));
  state[BIAS2_SQRT] = bitcast<u32>(sqrt(oneMinusExp(t * P.lnBeta2)));
  state[APPLIED] = 1u;
  state[STEP] = i + 1u;
}
