// Embedding gather over one part of the table (tables over the binding limit are split by rows):
// out[r, e] = table[ids[idsOffset + r] - start, e] for ids in [start, start + partRows). An id
// outside the whole vocabulary (NO_TOKEN marks an empty draft slot) gives a zero row, written by
// the part that starts at 0.
struct Params { rows: u32, dim: u32, vocab: u32, idsOffset: u32, start: u32, partRows: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;      // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> ids: array<u32>;       // [idsOffset + rows]
@group(0) @binding(3) var<storage, read> table: array<u32>;     // [partRows, dim] f32 bits, or f16 pairs
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [rows, dim]
override F16: bool = false;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let e = gid.x;
  let r = gid.y;
  if (e >= P.dim || r >= P.rows) { return; }
  let id = ids[P.idsOffset + r];
  if (id >= P.vocab) {
    if (P.start == 0u) { out[r * P.dim + e] = 0.0; }
    return;
  }
  if (id < P.start || id - P.start >= P.partRows) { return; }
  let i = (id - P.start) * P.dim + e;
  var v: f32;
  if (F16) { v = unpack2x16float(table[i >> 1u])[i & 1u]; } else { v = bitcast<f32>(table[i]); }
  out[r * P.dim + e] = v;
}
