// The verifier (one thread). The block held ids = [x0, d1 .. d(k-1)] at positions
// positions[0] .. positions[0] + k - 1 and the trunk's greedy picks g0 .. g(k-1). Emit g0, then g1
// while d1 == g0, g2 while d2 == g1, ...: the accepted drafts plus one bonus token, exactly what
// greedy decoding would emit. Stops (stop ids, the length limit) are checked after every emitted
// token. Then the next block starts at the bonus token (ids[0], positions from len - 1), and the
// draft heads will read the row that produced it (S_HEAD_ROW).
struct Params { k: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> state: array<u32>;     // [S_WORDS] see kernels/state.ts
@group(0) @binding(2) var<storage, read> picks: array<u32>;           // [k] trunk argmax per row
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;       // [k] block token ids
@group(0) @binding(4) var<storage, read_write> tokens: array<u32>;    // [capacity] the sequence
@group(0) @binding(5) var<storage, read_write> positions: array<u32>; // [k] block positions

fn isStop(t: u32) -> bool {
  for (var i = 0u; i < state[S_NSTOP]; i++) { if (state[S_STOP + i] == t) { return true; } }
  return false;
}

@compute @workgroup_size(1)
fn main() {
  if (state[S_DONE] != 0u) { return; }
  var len = state[S_LEN];
  var row = 0u;
  loop {
    let t = picks[row];
    tokens[len] = t;
    len += 1u;
    if (isStop(t) || len >= state[S_LIMIT]) { state[S_DONE] = 1u; break; }
    if (row + 1u >= P.k || ids[row + 1u] != t) { break; }
    row += 1u;
  }
  // Head statistics: draft slot j counts as accepted when d1..dj all matched.
  var matched = true;
  for (var j = 1u; j < P.k; j++) {
    if (ids[j] != NO_TOKEN) { state[S_PROPOSED + j - 1u] += 1u; }
    matched = matched && ids[j] == picks[j - 1u];
    if (matched) { state[S_ACCEPTED + j - 1u] += 1u; }
  }
  state[S_GENERATED] += len - state[S_LEN];
  state[S_LEN] = len;
  state[S_HEAD_ROW] = row;
  state[S_STEPS] += 1u;
  ids[0] = tokens[len - 1u];
  positions[0] = len - 1u;
  for (var j = 1u; j < P.k; j++) {
    ids[j] = NO_TOKEN;
    positions[j] = len - 1u + j;
  }
}
