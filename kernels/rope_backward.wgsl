// Backward of the RoPE rotation of rope_kv.wgsl on the query and key heads of a fused qkv
// gradient row, in place: the rotation is orthogonal, so its gradient is the inverse rotation
// (angle -p f_i) at the row's position:
//   da = da' cos + db' sin,   db = db' cos - da' sin
// for the pair (i, i + headDim/2) of each head. Value heads pass through. Training runs on whole
// sequences, so the forward's cache writes are just the key rows, whose gradients are rotated
// here like the queries'. Rows at positions >= capacity were not rotated and are left alone.
struct Params { rows: u32, nHeads: u32, nKvHeads: u32, headDim: u32, capacity: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;       // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> positions: array<u32>;  // [rows]
@group(0) @binding(3) var<storage, read> rope: array<vec2f>;     // [capacity, headDim/2]: (cos, sin)
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>; // [rows, (nHeads + 2 nKvHeads) headDim]
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (done[0] != 0u) { return; }
  let r = gid.y + gid.z * nwg.y;
  if (r >= P.rows) { return; }
  let pos = positions[r];
  if (pos >= P.capacity) { return; }
  let half = P.headDim / 2u;
  let t = gid.x;
  if (t >= (P.nHeads + P.nKvHeads) * half) { return; }
  let head = t / half;   // query heads first, then key heads
  let i = t % half;
  let cs = rope[pos * half + i];
  let at = r * (P.nHeads + 2u * P.nKvHeads) * P.headDim + head * P.headDim + i;
  let da = dqkv[at];
  let db = dqkv[at + half];
  dqkv[at] = da * cs.x + db * cs.y;
  dqkv[at + half] = db * cs.x - da * cs.y;
}
