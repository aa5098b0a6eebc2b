// Register-blocked matrix product: the one kernel behind a Linear layer's forward (y = x W^T),
// its input gradient (dX = dY W) and its weight gradient (dW = dY^T X). For i < M, j < N:
//   C[i, j] = sum over r of A(i, r) B(r, j)      r < K, or this split's range of it
//   A(i, r) = a[aOff + i aStride + r]             TA: a[aOff + r aStride + i]
//   B(r, j) = b[bOff + j bStride + r]             TB: b[bOff + r bStride + j]; f32, or f16 (F16)
//   c[cOff + i cStride + col(j)] = C[i, j] (+ bias[col(j)] with BIAS) (+ its old value with ACC)
//   col(j) = colOff + j; GATED: j < half ? colOff + j : upOff + j - half (a part's gate and up
//   rows in one launch, written to the gate and the up columns of y)
// SPLIT: workgroup z sums r over [z kChunk, min((z + 1) kChunk, K)) and writes its plain partial
// c[(z M + i) cStride + j]; matmul_reduce.wgsl adds the partials in order and applies the rest.
// Every output sums r in ascending order, one fma per step, whatever the tile shape: all tile
// configurations give the same bits (only the split count changes them).
// Tiles: WX x WY threads own a BM x BN block of C (BM = TM WY, BN = TN WX); a thread owns TM x TN
// outputs (TM, TN in {4, 8}) in up to 16 NAMED vec4 accumulators (an array indexed in the loop
// spills: 10x slower on an H200), rows 4 ty + 0..3 (and BM/2 + 4 ty + 0..3 when TM = 8), columns
// 4 tx + 0..3 (and BN/2 + 4 tx + 0..3 when TN = 8). K steps of BK go through workgroup memory as
// [BK][BM] and [BK][BN] (vec4 along M and N); the next step's global loads are issued before the
// current step's FMAs (PREFETCH: up to 4 vec4 per operand per thread, named too).
// VA / VB: offset and stride are multiples of 4, so 4 consecutive elements are one 16-byte load
// (8 bytes for f16); otherwise element loads. Loads past M, N or K read as 0.
struct Params {
  m: u32, n: u32, k: u32, aOff: u32, aStride: u32, bOff: u32, bStride: u32,
  cOff: u32, cStride: u32, colOff: u32, half: u32, upOff: u32, kChunk: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> a: array<vec4f>;      // A (see above)
@group(0) @binding(3) var<storage, read> b: array<vec2u>;      // B: f32 bits, or f16 pairs
@group(0) @binding(4) var<storage, read> bias: array<f32>;     // [col(N)] (BIAS)
@group(0) @binding(5) var<storage, read_write> c: array<f32>;  // C (see above)
override TA: bool = false;
override TB: bool = false;
override F16: bool = false;
override VA: bool = true;
override VB: bool = true;
override BIAS: bool = false;
override ACC: bool = false;
override GATED: bool = false;
override SPLIT: bool = false;
override TM: u32 = 8u;
override TN: u32 = 8u;
override WX: u32 = 16u;
override WY: u32 = 16u;
override BK: u32 = 16u;
override PREFETCH: bool = true;
override BM4: u32 = WY * TM / 4u;   // vec4s across the tile's rows
override BN4: u32 = WX * TN / 4u;
override NT: u32 = WX * WY;
var<workgroup> As: array<vec4f, BK * BM4>;  // [BK][BM]
var<workgroup> Bs: array<vec4f, BK * BN4>;  // [BK][BN]

// One load unit of A: 4 elements along r (!TA) or along i (TA). Unit u of the tile covers
// (i = u / (BK/4), r = 4 (u % (BK/4))) or (r = u / BM4, i = 4 (u % BM4)), so consecutive threads
// read consecutive memory and, with TA, the unit's smem slot is u itself.
fn elemA(e: u32) -> f32 { return a[e >> 2u][e & 3u]; }

fn loadA(u: u32, m0: u32, k0: u32, kEnd: u32) -> vec4f {
  var v = vec4f(0.0);
  if (u >= BK * BM4) { return v; }
  if (!TA) {
    let i = m0 + u / (BK / 4u);
    let r = k0 + 4u * (u % (BK / 4u));
    if (i >= P.m || r >= kEnd) { return v; }
    let e = P.aOff + i * P.aStride + r;
    if (VA) {
      v = select(vec4f(0.0), a[e >> 2u], vec4u(r) + vec4u(0u, 1u, 2u, 3u) < vec4u(kEnd));
    } else {
      v.x = elemA(e);
      if (r + 1u < kEnd) { v.y = elemA(e + 1u); }
      if (r + 2u < kEnd) { v.z = elemA(e + 2u); }
      if (r + 3u < kEnd) { v.w = elemA(e + 3u); }
    }
  } else {
    let r = k0 + u / BM4;
    let i = m0 + 4u * (u % BM4);
    if (r >= kEnd || i >= P.m) { return v; }
    let e = P.aOff + r * P.aStride + i;
    if (VA) {
      v = select(vec4f(0.0), a[e >> 2u], vec4u(i) + vec4u(0u, 1u, 2u, 3u) < vec4u(P.m));
    } else {
      v.x = elemA(e);
      if (i + 1u < P.m) { v.y = elemA(e + 1u); }
      if (i + 2u < P.m) { v.z = elemA(e + 2u); }
      if (i + 3u < P.m) { v.w = elemA(e + 3u); }
    }
  }
  return v;
}

fn elemB(e: u32) -> f32 {
  if (F16) { return unpack2x16float(b[e >> 2u][(e >> 1u) & 1u])[e & 1u]; }
  return bitcast<f32>(b[e >> 1u][e & 1u]);
}

// 4 elements of B from element e on, e a multiple of 4 (VB).
fn quadB(e: u32) -> vec4f {
  if (F16) {
    let w = b[e >> 2u];
    return vec4f(unpack2x16float(w.x), unpack2x16float(w.y));
  }
  return bitcast<vec4f>(vec4u(b[e >> 1u], b[(e >> 1u) + 1u]));
}

fn loadB(u: u32, n0: u32, k0: u32, kEnd: u32) -> vec4f {
  var v = vec4f(0.0);
  if (u >= BK * BN4) { return v; }
  if (!TB) {
    let j = n0 + u / (BK / 4u);
    let r = k0 + 4u * (u % (BK / 4u));
    if (j >= P.n || r >= kEnd) { return v; }
    let e = P.bOff + j * P.bStride + r;
    if (VB) {
      v = select(vec4f(0.0), quadB(e), vec4u(r) + vec4u(0u, 1u, 2u, 3u) < vec4u(kEnd));
    } else {
      v.x = elemB(e);
      if (r + 1u < kEnd) { v.y = elemB(e + 1u); }
      if (r + 2u < kEnd) { v.z = elemB(e + 2u); }
      if (r + 3u < kEnd) { v.w = elemB(e + 3u); }
    }
  } else {
    let r = k0 + u / BN4;
    let j = n0 + 4u * (u % BN4);
    if (r >= kEnd || j >= P.n) { return v; }
    let e = P.bOff + r * P.bStride + j;
    if (VB) {
      v = select(vec4f(0.0), quadB(e), vec4u(j) + vec4u(0u, 1u, 2u, 3u) < vec4u(P.n));
    } else {
      v.x = elemB(e);
      if (j + 1u < P.n) { v.y = elemB(e + 1u); }
      if (j + 2u < P.n) { v.z = elemB(e + 2u); }
      if (j + 3u < P.n) { v.w = elemB(e + 3u); }
    }
  }
  return v;
}

fn stashA(u: u32, v: vec4f) {
  if (u >= BK * BM4) { return; }
  if (TA) {
    As[u] = v;
  } else {
    let i = u / (BK / 4u);
    let r = 4u * (u % (BK / 4u));
    let s = r * BM4 + i / 4u;
    let q = i % 4u;
    As[s][q] = v.x;
    As[s + BM4][q] = v.y;
    As[s + 2u * BM4][q] = v.z;
    As[s + 3u * BM4][q] = v.w;
  }
}

fn stashB(u: u32, v: vec4f) {
  if (u >= BK * BN4) { return; }
  if (TB) {
    Bs[u] = v;
  } else {
    let j = u / (BK / 4u);
    let r = 4u * (u % (BK / 4u));
    let s = r * BN4 + j / 4u;
    let q = j % 4u;
    Bs[s][q] = v.x;
    Bs[s + BN4][q] = v.y;
    Bs[s + 2u * BN4][q] = v.z;
    Bs[s + 3u * BN4][q] = v.w;
  }
}

// A thread's loads of one K step: units li, li + NT, li + 2 NT, li + 3 NT of each operand (the
// launcher keeps a tile within 4 NT units).
struct Stage { a0: vec4f, a1: vec4f, a2: vec4f, a3: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f }

fn fetch(li: u32, m0: u32, n0: u32, k0: u32, kEnd: u32) -> Stage {
  var s: Stage;
  s.a0 = loadA(li, m0, k0, kEnd);
  s.b0 = loadB(li, n0, k0, kEnd);
  if (BK * BM4 > NT) { s.a1 = loadA(li + NT, m0, k0, kEnd); }
  if (BK * BN4 > NT) { s.b1 = loadB(li + NT, n0, k0, kEnd); }
  if (BK * BM4 > 2u * NT) {
    s.a2 = loadA(li + 2u * NT, m0, k0, kEnd);
    s.a3 = loadA(li + 3u * NT, m0, k0, kEnd);
  }
  if (BK * BN4 > 2u * NT) {
    s.b2 = loadB(li + 2u * NT, n0, k0, kEnd);
    s.b3 = loadB(li + 3u * NT, n0, k0, kEnd);
  }
  return s;
}

fn stash(li: u32, s: Stage) {
  stashA(li, s.a0);
  stashB(li, s.b0);
  if (BK * BM4 > NT) { stashA(li + NT, s.a1); }
  if (BK * BN4 > NT) { stashB(li + NT, s.b1); }
  if (BK * BM4 > 2u * NT) {
    stashA(li + 2u * NT, s.a2);
    stashA(li + 3u * NT, s.a3);
  }
  if (BK * BN4 > 2u * NT) {
    stashB(li + 2u * NT, s.b2);
    stashB(li + 3u * NT, s.b3);
  }
}

fn col(j: u32) -> u32 {
  if (GATED && j >= P.half) { return P.upOff + j - P.half; }
  return P.colOff + j;
}

// Writes C[i, j .. j+3] = v (the columns below N).
fn store(i: u32, j: u32, z: u32, v: vec4f) {
  if (i >= P.m) { return; }
  for (var q = 0u; q < 4u; q++) {
    if (j + q < P.n) {
      if (SPLIT) {
        c[(z * P.m + i) * P.cStride + j + q] = v[q];
      } else {
        let cj = col(j + q);
        let e = P.cOff + i * P.cStride + cj;
        var o = v[q];
        if (BIAS) { o += bias[cj]; }
        if (ACC) { o += c[e]; }
        c[e] = o;
      }
    }
  }
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let m0 = wid.y * BM4 * 4u;
  let n0 = wid.x * BN4 * 4u;
  let z = wid.z;
  var kBegin = 0u;
  var kEnd = P.k;
  if (SPLIT) {
    kBegin = z * P.kChunk;
    kEnd = min(kBegin + P.kChunk, P.k);
  }
  let tx = li % WX;
  let ty = li / WX;
  var c00 = vec4f(0.0); var c01 = vec4f(0.0); var c10 = vec4f(0.0); var c11 = vec4f(0.0);
  var c20 = vec4f(0.0); var c21 = vec4f(0.0); var c30 = vec4f(0.0); var c31 = vec4f(0.0);
  var c40 = vec4f(0.0); var c41 = vec4f(0.0); var c50 = vec4f(0.0); var c51 = vec4f(0.0);
  var c60 = vec4f(0.0); var c61 = vec4f(0.0); var c70 = vec4f(0.0); var c71 = vec4f(0.0);
  var st: Stage;
  if (PREFETCH) { st = fetch(li, m0, n0, kBegin, kEnd); }
  for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
    if (!PREFETCH) { st = fetch(li, m0, n0, k0, kEnd); }
    stash(li, st);
    workgroupBarrier();
    if (PREFETCH && k0 + BK < kEnd) { st = fetch(li, m0, n0, k0 + BK, kEnd); }
    for (var kk = 0u; kk < BK; kk++) {
      let a0 = As[kk * BM4 + ty];
      let b0 = Bs[kk * BN4 + tx];
      c00 = fma(vec4f(a0.x), b0, c00);
      c10 = fma(vec4f(a0.y), b0, c10);
      c20 = fma(vec4f(a0.z), b0, c20);
      c30 = fma(vec4f(a0.w), b0, c30);
      if (TN == 8u) {
        let b1 = Bs[kk * BN4 + WX + tx];
        c01 = fma(vec4f(a0.x), b1, c01);
        c11 = fma(vec4f(a0.y), b1, c11);
        c21 = fma(vec4f(a0.z), b1, c21);
        c31 = fma(vec4f(a0.w), b1, c31);
      }
      if (TM == 8u) {
        let a1 = As[kk * BM4 + WY + ty];
        c40 = fma(vec4f(a1.x), b0, c40);
        c50 = fma(vec4f(a1.y), b0, c50);
        c60 = fma(vec4f(a1.z), b0, c60);
        c70 = fma(vec4f(a1.w), b0, c70);
        if (TN == 8u) {
          let b1 = Bs[kk * BN4 + WX + tx];
          c41 = fma(vec4f(a1.x), b1, c41);
          c51 = fma(vec4f(a1.y), b1, c51);
          c61 = fma(vec4f(a1.z), b1, c61);
          c71 = fma(vec4f(a1.w), b1, c71);
        }
      }
    }
    workgroupBarrier();
  }
  let i0 = m0 + 4u * ty;
  let j0 = n0 + 4u * tx;
  let i1 = i0 + BM4 * 2u;  // + BM/2
  let j1 = j0 + BN4 * 2u;  // + BN/2
  store(i0, j0, z, c00);
  store(i0 + 1u, j0, z, c10);
  store(i0 + 2u, j0, z, c20);
  store(i0 + 3u, j0, z, c30);
  if (TN == 8u) {
    store(i0, j1, z, c01);
    store(i0 + 1u, j1, z, c11);
    store(i0 + 2u, j1, z, c21);
    store(i0 + 3u, j1, z, c31);
  }
  if (TM == 8u) {
    store(i1, j0, z, c40);
    store(i1 + 1u, j0, z, c50);
    store(i1 + 2u, j0, z, c60);
    store(i1 + 3u, j0, z, c70);
    if (TN == 8u) {
      store(i1, j1, z, c41);
      store(i1 + 1u, j1, z, c51);
      store(i1 + 2u, j1, z, c61);
      store(i1 + 3u, j1, z, c71);
    }
  }
}
