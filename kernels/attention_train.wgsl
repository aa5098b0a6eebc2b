// Causal grouped-query attention for training, forward (flash-attention style). B sequences of
// seqLen rows are stacked; row t of a sequence attends to rows 0..t of the same sequence.
// Workgroup (query block, head, sequence) keeps its 32 rows' outputs in registers and streams
// key blocks 0..(its own) through workgroup memory with an online softmax. Besides the output
// it writes each (row, head)'s logsumexp L of the scaled scores, so that the backward can
// recompute probabilities as exp(s - L) without storing them.
// Thread (ty, tx) = (li / 16, li % 16) owns query rows 2 ty and 2 ty + 1, the output vec4s
// tx + 16 j of both, and the score entries (2 ty + i, 2 tx + k).
// Accumulators are named variables: with arrays indexed in loops (local memory) and scalar
// staging instead, these kernels ran 7x slower on an H200.
struct Params { seqLen: u32, nHeads: u32, nKvHeads: u32, scale: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> qkv: array<vec4f>;      // [B seqLen, (nHeads + 2 nKvHeads) HD]: q, k, v heads
@group(0) @binding(3) var<storage, read_write> out: array<vec4f>;  // [B seqLen, nHeads HD]
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;  // [B seqLen, nHeads]
override HD: u32 = 64u;  // head width: a multiple of 4, at most 256
override CC: u32 = 32u;  // keys per staged V chunk: a multiple of 4, at most 32, CC HD <= 2048
const BLK: u32 = 32u;    // query rows and keys per block
const KT: u32 = 16u;     // head dims per staged chunk of the score product
const MASKED: f32 = -3.0e38;
// Score phase: Q then K chunks, each [KT][BLK / 4] (transposed: a thread's two rows are half of
// one vec4); value phase: V rows [CC][HD / 4].
var<workgroup> stage: array<vec4f, 512>;
var<workgroup> ps: array<vec4f, 256>;  // [BLK][BLK / 4]: scaled scores, then probabilities

// Stages head dims [d0, d0 + KT) of 32 rows (from `first`) of head column `col` into `tile`.
fn stageChunk(tile: u32, e: u32, base: u32, first: u32, col: u32, d0: u32) {
  let row = e / 4u;
  let v = e % 4u;
  let d = d0 + 4u * v;
  var x = vec4f(0.0);
  if (first + row < P.seqLen && d < HD) {
    x = qkv[((base + first + row) * (P.nHeads + 2u * P.nKvHeads) + col) * (HD / 4u) + d / 4u];
  }
  let at = tile * 128u + 4u * v * 8u + row / 4u;
  for (var c = 0u; c < 4u; c++) { stage[at + c * 8u][row % 4u] = x[c]; }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let qb = wid.x;
  let h = wid.y;
  let base = wid.z * P.seqLen;  // first row of the sequence
  let g = h / (P.nHeads / P.nKvHeads);
  let q0 = qb * BLK;
  let ty = li / 16u;
  let tx = li % 16u;
  let hd4 = HD / 4u;
  let scale = bitcast<f32>(P.scale);
  let rq = q0 + 2u * ty;  // this thread's first query row (in the sequence)
  let r0 = 2u * ty * 8u;  // its rows in ps
  let r1 = r0 + 8u;
  let pc = 2u * (tx % 2u);  // its two score columns in a ps vec4
  var m0 = MASKED;
  var m1 = MASKED;
  var l0 = 0.0;
  var l1 = 0.0;
  var a00 = vec4f(0.0); var a01 = vec4f(0.0); var a02 = vec4f(0.0); var a03 = vec4f(0.0);
  var a10 = vec4f(0.0); var a11 = vec4f(0.0); var a12 = vec4f(0.0); var a13 = vec4f(0.0);
  for (var kb = 0u; kb <= qb; kb++) {
    let k0 = kb * BLK;
    // Zeroed explicitly: a loop-body `var` without an initializer kept the last iteration's
    // value under wgpu on lavapipe.
    var s = vec4f(0.0);  // (row i, key k) at component 2 i + k
    for (var d0 = 0u; d0 < HD; d0 += KT) {
      if (li < 128u) {
        stageChunk(0u, li, base, q0, h, d0);
      } else {
        stageChunk(1u, li - 128u, base, k0, P.nHeads + g, d0);
      }
      workgroupBarrier();
      for (var kk = 0u; kk < KT; kk++) {
        let q4 = stage[kk * 8u + ty / 2u];
        let k4 = stage[128u + kk * 8u + tx / 2u];
        let qa = select(q4.xy, q4.zw, ty % 2u == 1u);
        let ka = select(k4.xy, k4.zw, tx % 2u == 1u);
        s = fma(qa.xxyy, ka.xyxy, s);
      }
      workgroupBarrier();
    }
    let ck = k0 + 2u * tx;
    let valid = vec4<bool>(ck <= rq, ck + 1u <= rq, ck <= rq + 1u, ck + 1u <= rq + 1u);
    s = select(vec4f(MASKED), s * scale, valid);
    ps[r0 + tx / 2u][pc] = s.x;
    ps[r0 + tx / 2u][pc + 1u] = s.y;
    ps[r1 + tx / 2u][pc] = s.z;
    ps[r1 + tx / 2u][pc + 1u] = s.w;
    workgroupBarrier();
    // Every thread of a row computes the same running max from the same values, so the row's
    // rescaling agrees across its sixteen threads without another exchange.
    var mx0 = m0;
    var mx1 = m1;
    for (var c4 = 0u; c4 < 8u; c4++) {
      let x = ps[r0 + c4];
      let y = ps[r1 + c4];
      mx0 = max(mx0, max(max(x.x, x.y), max(x.z, x.w)));
      mx1 = max(mx1, max(max(y.x, y.y), max(y.z, y.w)));
    }
    let corr0 = exp(m0 - mx0);
    let corr1 = exp(m1 - mx1);
    m0 = mx0;
    m1 = mx1;
    l0 *= corr0;
    l1 *= corr1;
    a00 *= corr0; a01 *= corr0; a02 *= corr0; a03 *= corr0;
    a10 *= corr1; a11 *= corr1; a12 *= corr1; a13 *= corr1;
    workgroupBarrier();
    let p = select(vec4f(0.0), exp(s - vec4f(m0, m0, m1, m1)), valid);
    ps[r0 + tx / 2u][pc] = p.x;
    ps[r0 + tx / 2u][pc + 1u] = p.y;
    ps[r1 + tx / 2u][pc] = p.z;
    ps[r1 + tx / 2u][pc + 1u] = p.w;
    for (var c0 = 0u; c0 < BLK; c0 += CC) {
      workgroupBarrier();
      let n = min(CC, BLK - c0);
      for (var e = li; e < n * hd4; e += 256u) {
        let row = e / hd4;
        let t = k0 + c0 + row;
        var x = vec4f(0.0);
        if (t < P.seqLen) {
          x = qkv[((base + t) * (P.nHeads + 2u * P.nKvHeads) + P.nHeads + P.nKvHeads + g) * hd4 + e % hd4];
        }
        stage[e] = x;
      }
      workgroupBarrier();
      for (var c4 = 0u; c4 < n / 4u; c4++) {
        let p0 = ps[r0 + c0 / 4u + c4];
        let p1 = ps[r1 + c0 / 4u + c4];
        l0 += (p0.x + p0.y) + (p0.z + p0.w);
        l1 += (p1.x + p1.y) + (p1.z + p1.w);
        for (var u = 0u; u < 4u; u++) {
          let x0 = p0[u];
          let x1 = p1[u];
          let vb = (4u * c4 + u) * hd4 + tx;
          if (tx < hd4) { let v = stage[vb]; a00 = fma(vec4f(x0), v, a00); a10 = fma(vec4f(x1), v, a10); }
          if (tx + 16u < hd4) { let v = stage[vb + 16u]; a01 = fma(vec4f(x0), v, a01); a11 = fma(vec4f(x1), v, a11); }
          if (tx + 32u < hd4) { let v = stage[vb + 32u]; a02 = fma(vec4f(x0), v, a02); a12 = fma(vec4f(x1), v, a12); }
          if (tx + 48u < hd4) { let v = stage[vb + 48u]; a03 = fma(vec4f(x0), v, a03); a13 = fma(vec4f(x1), v, a13); }
        }
      }
    }
    workgroupBarrier();
  }
  let width = P.nHeads * hd4;  // vec4s of an output row
  if (rq < P.seqLen) {
    let o = (base + rq) * width + h * hd4 + tx;
    if (tx < hd4) { out[o] = a00 / l0; }
    if (tx + 16u < hd4) { out[o + 16u] = a01 / l0; }
    if (tx + 32u < hd4) { out[o + 32u] = a02 / l0; }
    if (tx + 48u < hd4) { out[o + 48u] = a03 / l0; }
    if (tx == 0u) { lse[(base + rq) * P.nHeads + h] = m0 + log(l0); }
  }
  if (rq + 1u < P.seqLen) {
    let o = (base + rq + 1u) * width + h * hd4 + tx;
    if (tx < hd4) { out[o] = a10 / l1; }
    if (tx + 16u < hd4) { out[o + 16u] = a11 / l1; }
    if (tx + 32u < hd4) { out[o + 32u] = a12 / l1; }
    if (tx + 48u < hd4) { out[o + 48u] = a13 / l1; }
    if (tx == 0u) { lse[(base + rq + 1u) * P.nHeads + h] = m1 + log(l1); }
  }
}
