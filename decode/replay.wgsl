// A draft source that proposes a given continuation: draft j of the next block (position
// len - 1 + j) is continuation[len - 1 + j - promptLen], or NO_TOKEN past its end.
struct Params { k: u32, promptLen: u32, count: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;          // [S_WORDS] see kernels/state.ts
@group(0) @binding(2) var<storage, read> continuation: array<u32>; // [count]
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;    // [k]

@compute @workgroup_size(1)
fn main() {
  if (state[S_DONE] != 0u) { return; }
  for (var j = 1u; j < P.k; j++) {
    let i = state[S_LEN] - 1u + j - P.promptLen;
    if (i < P.count) { ids[j] = continuation[i]; } else { ids[j] = NO_TOKEN; }
  }
}
