// Causal grouped-query attention for training, backward, pass 2 of 2: dK and dV. WGSL has no
// float atomics, so each workgroup (key block, KV head, sequence) owns its 32 keys' dK and dV
// and sums, in registers and in a fixed order, over every query head of its group and every
// query block at or after its own: dV = P^T dOut, dK = scale dS^T Q, with P = exp(s - L) and
// dS = P (dP - D) recomputed from q, k, v, L and D (pass 1 wrote D). No two workgroups write
// the same element, so the result is deterministic.
// Thread (ty, tx) = (li / 16, li % 16) owns keys 2 ty and 2 ty + 1, the dK and dV vec4s
// tx + 16 j of both, and the transposed score entries (key 2 ty + i, query row 2 tx + k).
// Accumulators are named variables: with arrays indexed in loops (local memory) and scalar
// staging instead, these kernels ran 7x slower on an H200.
struct Params { seqLen: u32, nHeads: u32, nKvHeads: u32, scale: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;          // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> qkv: array<vec4f>;         // [B seqLen, (nHeads + 2 nKvHeads) HD]
@group(0) @binding(3) var<storage, read> dOut: array<vec4f>;        // [B seqLen, nHeads HD]
@group(0) @binding(4) var<storage, read> lse: array<f32>;           // [B seqLen, nHeads]
@group(0) @binding(5) var<storage, read> delta: array<f32>;         // [B seqLen, nHeads]: D
@group(0) @binding(6) var<storage, read_write> dqkv: array<vec4f>;  // [B seqLen, (nHeads + 2 nKvHeads) HD]: the dK, dV parts
override HD: u32 = 64u;  // head width: a multiple of 4, at most 256
override CC: u32 = 32u;  // query rows per staged Q/dOut chunk: a multiple of 4, at most 32, CC HD <= 1024
const BLK: u32 = 32u;    // query rows and keys per block
const KT: u32 = 16u;     // head dims per staged chunk of the score products
// Score phase: K, V, Q, dOut chunks, each [KT][BLK / 4] (transposed: a thread's two rows are
// half of one vec4); dK/dV phase: Q rows then dOut rows, each [CC][HD / 4].
var<workgroup> stage: array<vec4f, 512>;
var<workgroup> ps: array<vec4f, 256>;   // [key][query row / 4] P
var<workgroup> dss: array<vec4f, 256>;  // [key][query row / 4] dS

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
  let kb = wid.x;
  let g = wid.y;
  let base = wid.z * P.seqLen;
  let group = P.nHeads / P.nKvHeads;
  let k0 = kb * BLK;
  let blocks = (P.seqLen + BLK - 1u) / BLK;
  let ty = li / 16u;
  let tx = li % 16u;
  let hd4 = HD / 4u;
  let stride4 = (P.nHeads + 2u * P.nKvHeads) * hd4;  // vec4s of a qkv row
  let scale = bitcast<f32>(P.scale);
  let ck = k0 + 2u * ty;  // this thread's first key (in the sequence)
  let c0 = 2u * ty * 8u;  // its keys in ps and dss
  let c1 = c0 + 8u;
  let pc = 2u * (tx % 2u);
  var k00 = vec4f(0.0); var k01 = vec4f(0.0); var k02 = vec4f(0.0); var k03 = vec4f(0.0);
  var k10 = vec4f(0.0); var k11 = vec4f(0.0); var k12 = vec4f(0.0); var k13 = vec4f(0.0);
  var v00 = vec4f(0.0); var v01 = vec4f(0.0); var v02 = vec4f(0.0); var v03 = vec4f(0.0);
  var v10 = vec4f(0.0); var v11 = vec4f(0.0); var v12 = vec4f(0.0); var v13 = vec4f(0.0);
  for (var hh = 0u; hh < group; hh++) {
    let h = g * group + hh;
    for (var qb = kb; qb < blocks; qb++) {
      let q0 = qb * BLK;
      // Zeroed explicitly: a loop-body `var` without an initializer kept the last iteration's
      // value under wgpu on lavapipe.
      var s = vec4f(0.0);   // k . q of (key i, row k) at component 2 i + k
      var dp = vec4f(0.0);  // v . dOut, the same entries
      for (var d0 = 0u; d0 < HD; d0 += KT) {
        let e = li % 128u;
        if (li < 128u) {
          stageChunk(0u, e, base, k0, P.nHeads + g, d0, false);
          stageChunk(1u, e, base, k0, P.nHeads + P.nKvHeads + g, d0, false);
        } else {
          stageChunk(2u, e, base, q0, h, d0, false);
          stageChunk(3u, e, base, q0, h, d0, true);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
          let k4 = stage[kk * 8u + ty / 2u];
          let v4 = stage[128u + kk * 8u + ty / 2u];
          let q4 = stage[256u + kk * 8u + tx / 2u];
          let o4 = stage[384u + kk * 8u + tx / 2u];
          let ka = select(k4.xy, k4.zw, ty % 2u == 1u);
          let va = select(v4.xy, v4.zw, ty % 2u == 1u);
          let qa = select(q4.xy, q4.zw, tx % 2u == 1u);
          let oa = select(o4.xy, o4.zw, tx % 2u == 1u);
          s = fma(ka.xxyy, qa.xyxy, s);
          dp = fma(va.xxyy, oa.xyxy, dp);
        }
        workgroupBarrier();
      }
      let rq = q0 + 2u * tx;
      let in0 = rq < P.seqLen;
      let in1 = rq + 1u < P.seqLen;
      let valid = vec4<bool>(ck <= rq && in0, ck <= rq + 1u && in1, ck + 1u <= rq && in0,
                             ck + 1u <= rq + 1u && in1);
      var lr = vec2f(0.0);
      var dr = vec2f(0.0);
      if (in0) { lr.x = lse[(base + rq) * P.nHeads + h]; dr.x = delta[(base + rq) * P.nHeads + h]; }
      if (in1) { lr.y = lse[(base + rq + 1u) * P.nHeads + h]; dr.y = delta[(base + rq + 1u) * P.nHeads + h]; }
      let p = select(vec4f(0.0), exp(s * scale - lr.xyxy), valid);
      let d_s = p * (dp - dr.xyxy);
      ps[c0 + tx / 2u][pc] = p.x;
      ps[c0 + tx / 2u][pc + 1u] = p.y;
      ps[c1 + tx / 2u][pc] = p.z;
      ps[c1 + tx / 2u][pc + 1u] = p.w;
      dss[c0 + tx / 2u][pc] = d_s.x;
      dss[c0 + tx / 2u][pc + 1u] = d_s.y;
      dss[c1 + tx / 2u][pc] = d_s.z;
      dss[c1 + tx / 2u][pc + 1u] = d_s.w;
      for (var r0 = 0u; r0 < BLK; r0 += CC) {
        workgroupBarrier();
        let n = min(CC, BLK - r0);
        for (var e = li; e < n * hd4; e += 256u) {
          let t = q0 + r0 + e / hd4;
          var x = vec4f(0.0);
          var y = vec4f(0.0);
          if (t < P.seqLen) {
            x = qkv[(base + t) * stride4 + h * hd4 + e % hd4];
            y = dOut[((base + t) * P.nHeads + h) * hd4 + e % hd4];
          }
          stage[e] = x;
          stage[256u + e] = y;
        }
        workgroupBarrier();
        for (var r4 = 0u; r4 < n / 4u; r4++) {
          let p0 = ps[c0 + r0 / 4u + r4];
          let p1 = ps[c1 + r0 / 4u + r4];
          let e0 = dss[c0 + r0 / 4u + r4];
          let e1 = dss[c1 + r0 / 4u + r4];
          for (var u = 0u; u < 4u; u++) {
            let x0 = vec4f(e0[u]);
            let x1 = vec4f(e1[u]);
            let y0 = vec4f(p0[u]);
            let y1 = vec4f(p1[u]);
            let at = (4u * r4 + u) * hd4 + tx;
            if (tx < hd4) {
              let q = stage[at];
              let o = stage[256u + at];
              k00 = fma(x0, q, k00); k10 = fma(x1, q, k10); v00 = fma(y0, o, v00); v10 = fma(y1, o, v10);
            }
            if (tx + 16u < hd4) {
              let q = stage[at + 16u];
              let o = stage[256u + at + 16u];
              k01 = fma(x0, q, k01); k11 = fma(x1, q, k11); v01 = fma(y0, o, v01); v11 = fma(y1, o, v11);
            }
            if (tx + 32u < hd4) {
              let q = stage[at + 32u];
              let o = stage[256u + at + 32u];
              k02 = fma(x0, q, k02); k12 = fma(x1, q, k12); v02 = fma(y0, o, v02); v12 = fma(y1, o, v12);
            }
            if (tx + 48u < hd4) {
              let q = stage[at + 48u];
              let o = stage[256u + at + 48u];
              k03 = fma(x0, q, k03); k13 = fma(x1, q, k13); v03 = fma(y0, o, v03); v13 = fma(y1, o, v13);
            }
          }
        }
      }
      workgroupBarrier();
    }
  }
  let kOff = (P.nHeads + g) * hd4 + tx;  // dK of this thread's first vec4; dV nKvHeads heads on
  let vOff = kOff + P.nKvHeads * hd4;
  if (ck < P.seqLen) {
    let o = (base + ck) * stride4;
    if (tx < hd4) { dqkv[o + kOff] = k00 * scale; dqkv[o + vOff] = v00; }
    if (tx + 16u < hd4) { dqkv[o + kOff + 16u] = k01 * scale; dqkv[o + vOff + 16u] = v01; }
    if (tx + 32u < hd4) { dqkv[o + kOff + 32u] = k02 * scale; dqkv[o + vOff + 32u] = v02; }
    if (tx + 48u < hd4) { dqkv[o + kOff + 48u] = k03 * scale; dqkv[o + vOff + 48u] = v03; }
  }
  if (ck + 1u < P.seqLen) {
    let o = (base + ck + 1u) * stride4;
    if (tx < hd4) { dqkv[o + kOff] = k10 * scale; dqkv[o + vOff] = v10; }
    if (tx + 16u < hd4) { dqkv[o + kOff + 16u] = k11 * scale; dqkv[o + vOff + 16u] = v11; }
    if (tx + 32u < hd4) { dqkv[o + kOff + 32u] = k12 * scale; dqkv[o + vOff + 32u] = v12; }
    if (tx + 48u < hd4) { dqkv[o + kOff + 48u] = k13 * scale; dqkv[o + vOff + 48u] = v13; }
  }
}
