// Copies the block row the draft heads read (state.headRow, set by verify) into row outRow of out.
struct Params { dim: u32, outRow: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [rows, dim]
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [outRow + 1, dim]

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (state[S_DONE] != 0u) { return; }
  let e = gid.x;
  if (e < P.dim) { out[P.outRow * P.dim + e] = x[state[S_HEAD_ROW] * P.dim + e]; }
}
