// Embedding backward without atomics: dE[v, :] += sum of dh[r, :] over the rows r with ids[r] = v.
// The host sorts the batch's (id, row) pairs once when it uploads the ids (embedBackwardPlan in
// embed_backward.ts), so each workgroup owns one distinct id, sums its rows in ascending order and
// writes that id's row of dE once: no two workgroups touch the same row, and the bits do not
// depend on scheduling. Plan layout, u32 words, 3 rows + 2 in all:
//   [0]                        n, the number of distinct ids
//   [1, 1 + rows)              the distinct ids, ascending (first n used)
//   [1 + rows, 2 + 2 rows)     group starts into the order list (first n + 1 used)
//   [2 + 2 rows, 2 + 3 rows)   row indices grouped by id, ascending within a group
// The grid has one workgroup per row (n is only known on the GPU); those past n exit at once.
struct Params { rows: u32, dim: u32, vocab: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;     // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> plan: array<u32>;     // [3 rows + 2], see above
@group(0) @binding(3) var<storage, read> dh: array<f32>;       // [rows, dim]
@group(0) @binding(4) var<storage, read_write> dE: array<f32>; // [vocab, dim], accumulated into
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  if (done[0] != 0u) { return; }
  let k = wid.x + wid.y * nwg.x;
  if (k >= min(plan[0], P.rows)) { return; }
  let id = plan[1u + k];
  if (id >= P.vocab) { return; }
  let start = plan[1u + P.rows + k];
  let end = min(plan[2u + P.rows + k], P.rows);
  let order = 2u + 2u * P.rows;
  for (var c = li; c < P.dim; c += WG) {
    var s = 0.0;
    for (var j = start; j < end; j++) { s += dh[plan[order + j] * P.dim + c]; }
    dE[id * P.dim + c] += s;
  }
}
