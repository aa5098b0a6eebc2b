#!/usr/bin/env bash
# One whole training step of ahead against PyTorch float64, for every head kind and the trunk
# features training supports (GPU machine: PyTorch is there). Each case: tools/train_step_dump.ts
# writes ahead's step, tools/torch_step_check.py rebuilds it in PyTorch and compares.
#   source .gpu/env.sh && bash tools/gpu_step_check.sh OUT.json
set -uo pipefail
out=$1; work=${WORK:-/tmp/stepcheck}; rm -rf "$work"; mkdir -p "$work"
cases=(
  "llama-transformer|"
  "llama-medusa|--head-kind medusa"
  "llama-medusa-own|--head-kind medusa --own-unembedding"
  "qwen2-transformer|--trunk qwen2"
  "qwen3-transformer|--trunk qwen3"
  "qwen3-medusa-own|--trunk qwen3 --head-kind medusa --own-unembedding"
)
status=0
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  # shellcheck disable=SC2086
  deno run -A --unstable-webgpu tools/train_step_dump.ts --out "$work/$name" $args > /dev/null &&
    python3 tools/torch_step_check.py "$work/$name" --json "$work/$name.json" > "$work/$name.txt"
  rc=$?; [ $rc -ne 0 ] && status=1
  echo "$name: $(tail -1 "$work/$name.txt" 2>/dev/null || echo failed) (rc $rc)"
done
python3 - "$work" "$out" "${cases[@]}" <<'PY'
import json, sys
work, out, cases = sys.argv[1], sys.argv[2], [c.split("|")[0] for c in sys.argv[3:]]
res = {}
for c in cases:
    try:
        res[c] = json.load(open(f"{work}/{c}.json"))
    except OSError:
        res[c] = None
json.dump(res, open(out, "w"), indent=1)
print("| case | worst loss | worst gradient | worst weight change | worst updated weight | ok |")
print("| --- | ---: | ---: | ---: | ---: | --- |")
for c, r in res.items():
    if not r:
        print(f"| {c} | - | - | - | - | failed |"); continue
    rows = r["rows"]
    g = max(e for n, e, b in rows if n.startswith("grad "))
    get = lambda p: next(e for n, e, b in rows if n.startswith(p))
    print(f"| {c} | {get('loss'):.1e} | {g:.1e} | {get('weight changes'):.1e} | {get('updated'):.1e} | {r['ok']} |")
PY
exit $status
