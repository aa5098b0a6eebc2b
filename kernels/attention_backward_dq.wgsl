// Causal grouped-query attention for training, backward, pass 1 of 2: dQ, and D = rowsum(dOut *
// out) per (row, head) for pass 2 (attention_backward.wgsl). Workgroup (query block, head,
// sequence) owns its 32 rows' dQ, so it sums over key blocks 0..(its own) in registers: no two
// workgroups write the same element and the order of the sums is fixed. Probabilities are
// recomputed from q, k and the forward's logsumexp L: P = exp(s - L); dS = P (dP - D) with
// dP = dOut . v; dQ = scale dS K.
// Thread (ty, tx) = (li / 16, li % 16) owns query rows 2 ty and 2 ty + 1, the dQ vec4s tx + 16 j
// of both, and the score entries (2 ty + i, 2 tx + k).
// Accumulators are named variables: with arrays indexed in loops (local memory) and scalar
// staging instead, these kernels ran 7x slower on an H200.
struct Params { seqLen: u32, nHeads: u32, nKvHeads: u32, scale: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;          // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> qkv: array<vec4f>;         // [B seqLen, (nHeads + 2 nKvHeads) HD]
@group(0) @binding(3) var<storage, read> out: array<vec4f>;         // [B seqLen, nHeads HD]
@group(0) @binding(4) var<storage, read> dOut: array<vec4f>;        // [B seqLen, nHeads HD]
@group(0) @binding(5) var<storage, read> lse: array<f32>;           // [B seqLen, nHeads]
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;   // [B seqLen, nHeads]: D
@group(0) @binding(7) var<storage, read_write> dqkv: array<vec4f>;  // [B seqLen, (nHeads + 2 nKvHeads) HD]: the dQ part
override HD: u32 = 64u;  // head width: a multiple of 4, at most 256
override CC: u32 = 32u;  // keys per staged K chunk: a multiple of 4, at most 32, CC HD <= 2048
const BLK: u32 = 32u;    // query rows and keys per block
const KT: u32 = 16u;     // head dims per staged chunk of the score products
// Score phase: Q, dOut, K, V chunks, each [KT][BLK / 4] (transposed: a thread's two rows are
// half of one vec4); dQ phase: K rows [CC][HD / 4].
var<workgroup> stage: array<vec4f, 512>;
var<workgroup> dss: array<vec4f, 256>;  // [BLK][BLK / 4] dS
var<workgroup> red: array<f32, 256>;
var<workgroup> ls: array<f32, 32>;
var<workgroup> ds: array<f32, 32>;

// Stages head dims [d0, d0 + KT) of 32 rows (from `first`) into `tile`: from qkv at head
// column `col`, or from dOut at head `col` when `fromDOut`.
fn stageChunk(tile: u32, e: u32, base: u32, first: u32, col: u32, d0: u32, fromDOut: bool) {
  let row = e / 4u;
  let v = e % 4u;
  let d = d0 + 4u * v;
  var x = vec4f(0.0);
  if (first + row < P.seqLen && d < HD) {
    let r = base + first + row;
    if (fromDOut) {
      x = dOut[(r * P.nHeads + col) * (HD / 4u) + d / 4u];
    } else {
      x = qkv[(r * (P.nHeads + 2u * P.nKvHeads) + col) * (HD / 4u) + d / 4u];
    }
  }
  let at = tile * 128u + 4u * v * 8u + row / 4u;
  for (var c = 0u; c < 4u; c++) { stage[at + c * 8u][row % 4u] = x[c]; }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let qb = wid.x;
  let h = wid.y;
  let base = wid.z * P.seqLen;
  let g = h / (P.nHeads / P.nKvHeads);
  let q0 = qb * BLK;
  let ty = li / 16u;
  let tx = li % 16u;
  let hd4 = HD / 4u;
  let stride4 = (P.nHeads + 2u * P.nKvHeads) * hd4;  // vec4s of a qkv row
  let scale = bitcast<f32>(P.scale);

  // D of the block's rows: eight threads per row, then a fixed-order sum of the eight.
  {
    let r = li / 8u;
    let part = li % 8u;
    var sum = 0.0;
    if (q0 + r < P.seqLen) {
      let at = ((base + q0 + r) * P.nHeads + h) * hd4;
      for (var v = part; v < hd4; v += 8u) { sum += dot(dOut[at + v], out[at + v]); }
    }
    red[li] = sum;
    workgroupBarrier();
    if (part == 0u) {
      var d = 0.0;
      for (var k = 0u; k < 8u; k++) { d += red[li + k]; }
      ds[r] = d;
      ls[r] = 0.0;
      if (q0 + r < P.seqLen) {
        let at = (base + q0 + r) * P.nHeads + h;
        delta[at] = d;
        ls[r] = lse[at];
      }
    }
  }

  let rq = q0 + 2u * ty;
  let r0 = 2u * ty * 8u;  // this thread's rows in dss
  let r1 = r0 + 8u;
  let pc = 2u * (tx % 2u);
  var q00 = vec4f(0.0); var q01 = vec4f(0.0); var q02 = vec4f(0.0); var q03 = vec4f(0.0);
  var q10 = vec4f(0.0); var q11 = vec4f(0.0); var q12 = vec4f(0.0); var q13 = vec4f(0.0);
  for (var kb = 0u; kb <= qb; kb++) {
    let k0 = kb * BLK;
    // Zeroed explicitly: a loop-body `var` without an initializer kept the last iteration's
    // value under wgpu on lavapipe.
    var s = vec4f(0.0);   // q . k of (row i, key k) at component 2 i + k
    var dp = vec4f(0.0);  // dOut . v, the same entries
    for (var d0 = 0u; d0 < HD; d0 += KT) {
      let e = li % 128u;
      if (li < 128u) {
        stageChunk(0u, e, base, q0, h, d0, false);
        stageChunk(1u, e, base, q0, h, d0, true);
      } else {
        stageChunk(2u, e, base, k0, P.nHeads + g, d0, false);
        stageChunk(3u, e, base, k0, P.nHeads + P.nKvHeads + g, d0, false);
      }
      workgroupBarrier();
      for (var kk = 0u; kk < KT; kk++) {
        let q4 = stage[kk * 8u + ty / 2u];
        let o4 = stage[128u + kk * 8u + ty / 2u];
        let k4 = stage[256u + kk * 8u + tx / 2u];
        let v4 = stage[384u + kk * 8u + tx / 2u];
        let qa = select(q4.xy, q4.zw, ty % 2u == 1u);
        let oa = select(o4.xy, o4.zw, ty % 2u == 1u);
        let ka = select(k4.xy, k4.zw, tx % 2u == 1u);
        let va = select(v4.xy, v4.zw, tx % 2u == 1u);
        s = fma(qa.xxyy, ka.xyxy, s);
        dp = fma(oa.xxyy, va.xyxy, dp);
      }
      workgroupBarrier();
    }
    let ck = k0 + 2u * tx;
    let valid = vec4<bool>(ck <= rq, ck + 1u <= rq, ck <= rq + 1u, ck + 1u <= rq + 1u);
    let lr = vec4f(ls[2u * ty], ls[2u * ty], ls[2u * ty + 1u], ls[2u * ty + 1u]);
    let dr = vec4f(ds[2u * ty], ds[2u * ty], ds[2u * ty + 1u], ds[2u * ty + 1u]);
    let p = select(vec4f(0.0), exp(s * scale - lr), valid);
    let d_s = p * (dp - dr);
    dss[r0 + tx / 2u][pc] = d_s.x;
    dss[r0 + tx / 2u][pc + 1u] = d_s.y;
    dss[r1 + tx / 2u][pc] = d_s.z;
    dss[r1 + tx / 2u][pc + 1u] = d_s.w;
    for (var c0 = 0u; c0 < BLK; c0 += CC) {
      workgroupBarrier();
      let n = min(CC, BLK - c0);
      for (var e = li; e < n * hd4; e += 256u) {
        let t = k0 + c0 + e / hd4;
        var x = vec4f(0.0);
        if (t < P.seqLen) { x = qkv[(base + t) * stride4 + (P.nHeads + g) * hd4 + e % hd4]; }
        stage[e] = x;
      }
      workgroupBarrier();
      for (var c4 = 0u; c4 < n / 4u; c4++) {
        let e0 = dss[r0 + c0 / 4u + c4];
        let e1 = dss[r1 + c0 / 4u + c4];
        for (var u = 0u; u < 4u; u++) {
          let x0 = vec4f(e0[u]);
          let x1 = vec4f(e1[u]);
          let kb4 = (4u * c4 + u) * hd4 + tx;
          if (tx < hd4) { let k = stage[kb4]; q00 = fma(x0, k, q00); q10 = fma(x1, k, q10); }
          if (tx + 16u < hd4) { let k = stage[kb4 + 16u]; q01 = fma(x0, k, q01); q11 = fma(x1, k, q11); }
          if (tx + 32u < hd4) { let k = stage[kb4 + 32u]; q02 = fma(x0, k, q02); q12 = fma(x1, k, q12); }
          if (tx + 48u < hd4) { let k = stage[kb4 + 48u]; q03 = fma(x0, k, q03); q13 = fma(x1, k, q13); }
        }
      }
    }
    workgroupBarrier();
  }
  if (rq < P.seqLen) {
    let o = (base + rq) * stride4 + h * hd4 + tx;
    if (tx < hd4) { dqkv[o] = q00 * scale; }
    if (tx + 16u < hd4) { dqkv[o + 16u] = q01 * scale; }
    if (tx + 32u < hd4) { dqkv[o + 32u] = q02 * scale; }
    if (tx + 48u < hd4) { dqkv[o + 48u] = q03 * scale; }
  }
  if (rq + 1u < P.seqLen) {
    let o = (base + rq + 1u) * stride4 + h * hd4 + tx;
    if (tx < hd4) { dqkv[o] = q10 * scale; }
    if (tx + 16u < hd4) { dqkv[o + 16u] = q11 * scale; }
    if (tx + 32u < hd4) { dqkv[o + 32u] = q12 * scale; }
    if (tx + 48u < hd4) { dqkv[o + 48u] = q13 * scale; }
  }
}
