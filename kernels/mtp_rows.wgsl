// Rows of one run of a sequential MTP module (heads/sequential.ts): for row r, its position
//   q = positions[0] + start + r - (fromHeadRow ? headRow[at] + 1 : 0)
// and the token it embeds, t[q + ahead] (module k at position q reads t_{q+k}), taken from `src`
// at q + ahead - (fromIds ? positions[0] : 0) while that is below srcLen. A row with q < 0 has no
// place in the module's sequence: it goes to the trash position (never attended) with no token.
// The token at position 0 is dropped (embeds as zeros), as vLLM does.
struct Params { rows: u32, start: i32, fromHeadRow: u32, at: u32, ahead: u32, fromIds: u32,
                srcLen: u32, trash: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> done: array<u32>;        // [1] nonzero: exit at once
@group(0) @binding(2) var<storage, read> headRow: array<u32>;     // [at + 1] (decode state)
@group(0) @binding(3) var<storage, read> positions: array<u32>;   // [1+] the block's positions
@group(0) @binding(4) var<storage, read> src: array<u32>;         // [srcLen] token ids
@group(0) @binding(5) var<storage, read_write> outPos: array<u32>; // [rows]
@group(0) @binding(6) var<storage, read_write> outTok: array<u32>; // [rows]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (done[0] != 0u) { return; }
  let r = gid.x;
  if (r >= P.rows) { return; }
  var q = i32(positions[0]) + P.start + i32(r);
  if (P.fromHeadRow != 0u) { q -= i32(headRow[P.at]) + 1; }
  if (q < 0) {
    outPos[r] = P.trash;
    outTok[r] = NO_TOKEN;
    return;
  }
  outPos[r] = u32(q);
  var i = u32(q) + P.ahead;
  if (P.fromIds != 0u) { i -= positions[0]; }
  var t = NO_TOKEN;
  if (q > 0 && i < P.srcLen) { t = src[i]; }
  outTok[r] = t;
}
