// Embedding gather: out[r, e] = table[ids[idsOffset + r], e]; an id outside the vocabulary
// (NO_TOKEN marks an empty draft slot) gives a zero row.
struct Params { rows: u32, dim: u32, vocab: u32, idsOffset: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;      // [idsOffset + rows]
@group(0) @binding(3) var<storage, read> table: array<u32>;    // [vocab, dim] f32 bits, or f16 pairs
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [rows, dim]
override F16: bool = false;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (state[S_DONE] != 0u) { return; }
  let e = gid.x;
  let r = gid.y;
  if (e >= P.dim || r >= P.rows) { return; }
  let id = ids[P.idsOffset + r];
  var v = 0.0;
  if (id < P.vocab) {
    let i = id * P.dim + e;
    if (F16) { v = unpack2x16float(table[i >> 1u])[i & 1u]; } else { v = bitcast<f32>(table[i]); }
  }
  out[r * P.dim + e] = v;
}
