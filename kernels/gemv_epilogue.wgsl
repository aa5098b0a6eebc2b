// The epilogue of gemv.wgsl and gemv_q.wgsl, appended to both by their launcher: the partial sums
// in workgroup memory ([gate; up][RO ROWS][WG], written as (output row ro, query row r) at
// (ro ROWS + r) WG + li) reduced over TPR threads in a fixed order, then the norm's 1 / rms, bias,
// activation and residual, stored to y. The kernel declares what this uses: P, b, res, y, invRms,
// partial, positions, rope, kCache, vCache, and the overrides TPR, ROWS, RO, GATED, BIAS, SILU,
// RESIDUAL, NORM, ROPE, KV_F16.
// ROPE (the qkv projection of decode and verify blocks): RoPE on the query and key rows of the
// fused [q; k; v] output, queries stored to y, rotated keys and the values stored into the KV
// cache at the row's position (rope_kv.wgsl's job, without its launch).
// RoPE pairs output i with i + headDim/2, so outRow() hands a workgroup's thread groups the rows
// of whole pairs: thread group 2p + e computes row i + e headDim/2 of pair p = (head, i), and the
// f16 cache's neighbour dims (2i, 2i + 1) are two groups apart in the same workgroup (headDim/2
// is even and a workgroup holds an even number of pairs).

fn silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }

// The workgroup's outputs, after its partial sums are in `partial` (a barrier behind them): thread
// li finishes output row (ro, query row r) of thread group li / (RO ROWS). Called by every thread.
fn epilogue(li: u32, wg: u32, outs: u32, r0: u32) {
  let oo = li / (RO * ROWS);
  let jr = li % (RO * ROWS);  // ro * ROWS + r
  let r = jr % ROWS;
  let nn = outRow((wg * outs + oo) * RO + jr / ROWS);
  let live = li < outs * RO * ROWS && nn < P.n && r0 + r < P.rows;
  var v = 0.0;
  if (live) {
    var s = 0.0;
    var su = 0.0;
    for (var t = 0u; t < TPR; t++) {
      s += partial[jr * WG + oo * TPR + t];
      if (GATED) { su += partial[(RO * ROWS + jr) * WG + oo * TPR + t]; }
    }
    v = s;
    if (NORM) {
      v *= invRms[r];
      su *= invRms[r];
    }
    if (BIAS) { v += b[P.outOffset + nn]; }
    if (GATED) { v = silu(v) * su; } else if (SILU) { v = silu(v); }
    if (RESIDUAL) { v += res[(r0 + r) * P.resDim + (P.outOffset + nn) % P.resDim]; }
    if (!ROPE) { y[P.yOffset + (r0 + r) * P.outStride + P.outOffset + nn] = v; }
  }
  if (ROPE) { ropeEpilogue(li, oo * RO + jr / ROWS, r, r0, nn, v, live); }
}

// Output row of thread group j (the identity without ROPE).
fn outRow(j: u32) -> u32 {
  if (!ROPE) { return j; }
  let half = P.headDim / 2u;
  let p = j / 2u;
  return (p / half) * P.headDim + p % half + (j % 2u) * half;
}

// Thread li = g ROWS + r of the epilogue holds v = output row nn (of this part; the workgroup's
// g-th, outRow(first + g)) for query row r (of the workgroup's block from row r0); `live` marks
// real (row, query row) pairs. Called by every thread of the workgroup.
fn ropeEpilogue(li: u32, g: u32, r: u32, r0: u32, nn: u32, v: f32, live: bool) {
  workgroupBarrier();  // partial's sums are read
  partial[li] = v;
  workgroupBarrier();
  let hd = P.headDim;
  let half = hd / 2u;
  let col = P.outOffset + nn;  // in [q heads; k heads; v heads]
  let head = col / hd;
  let d = col % hd;
  var pos = 0u;
  if (live) { pos = positions[r0 + r]; }
  let cached = live && pos < P.capacity;
  var o = v;
  if (cached && head < P.nHeads + P.nKvHeads) {
    let cs = rope[pos * half + d % half];
    let other = partial[(g ^ 1u) * ROWS + r];
    if (d < half) { o = v * cs.x - other * cs.y; } else { o = v * cs.x + other * cs.y; }
  }
  partial[WG + li] = o;
  workgroupBarrier();
  if (!live) { return; }
  if (head < P.nHeads) {
    y[P.yOffset + (r0 + r) * P.outStride + col] = o;
    return;
  }
  if (!cached) { return; }
  let kv = head - P.nHeads;
  let isV = kv >= P.nKvHeads;
  let c = (pos * P.nKvHeads + kv % P.nKvHeads) * hd + d;
  var word = bitcast<u32>(o);
  if (KV_F16) {
    if (d % 2u == 1u) { return; }
    word = pack2x16float(vec2f(o, partial[WG + (g + 2u) * ROWS + r]));
    if (isV) { vCache[c / 2u] = word; } else { kCache[c / 2u] = word; }
    return;
  }
  if (isV) { vCache[c] = word; } else { kCache[c] = word; }
}
