// Prompt-lookup drafts (one workgroup): the last n tokens of the sequence, n from maxN down to
// minN, are looked up in the whole sequence (prompt and output so far); at the latest earlier
// occurrence, the tokens that followed it become drafts 1 .. k-1 of the next block. Runs after
// the verifier, which has appended the accepted tokens and put the last one in ids[0]. With
// KEEP_UNLESS_FOUND the ids are left as another source wrote them when nothing matches (a
// combined source: lookup where the context repeats, the heads elsewhere).
struct Params { k: u32, maxN: u32, minN: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;       // [S_WORDS] decode state
@group(0) @binding(2) var<storage, read> tokens: array<u32>;      // [capacity] the sequence
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;   // [k] the next block's ids
override KEEP_UNLESS_FOUND: bool = false;
const WG: u32 = 256u;
var<workgroup> best: atomic<u32>;  // 1 + the end of the latest match, 0 for none

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  if (state[S_DONE] != 0u) { return; }
  let len = state[S_LEN];
  var end = 0u;
  for (var n = P.maxN; n >= P.minN && n >= 1u; n--) {
    if (li == 0u) { atomicStore(&best, 0u); }
    workgroupBarrier();
    // An earlier occurrence ends at j < len - 1: tokens[j - n + 1 .. j] == tokens[len - n .. len - 1].
    if (len > n) {
      for (var j = n - 1u + li; j + 1u < len; j += WG) {
        var same = true;
        for (var i = 0u; i < n && same; i++) { same = tokens[j - i] == tokens[len - 1u - i]; }
        if (same) { atomicMax(&best, j + 1u); }
      }
    }
    end = workgroupUniformLoad(&best);
    if (end != 0u) { break; }
  }
  if (li != 0u) { return; }
  if (end == 0u) {
    if (!KEEP_UNLESS_FOUND) { for (var j = 1u; j < P.k; j++) { ids[j] = NO_TOKEN; } }
    return;
  }
  // The match ends at end - 1: propose what followed it.
  for (var j = 1u; j < P.k; j++) {
    let at = end - 1u + j;
    ids[j] = select(NO_TOKEN, tokens[at], at < len);
  }
}
