#!/usr/bin/env bash
# What self-distillation gains: heads-only training of fresh heads on the default model's frozen
# trunk, on the real text against the trunk's own greedy continuations (--distil), with the same
# steps and settings; then each model's teacher-forced head accuracy on held-out code and its
# tokens per step and speedup when generating (tools/eval_model.ts).
#   source .gpu/env.sh && bash tools/gpu_distil_experiment.sh DATA HELDOUT OUTDIR STEPS PROMPTS
set -uo pipefail
data=$1; held=$2; out=$3; steps=$4; prompts=$5
work=${WORK:-/tmp/distil}; rm -rf "$work"; mkdir -p "$work" "$out"
opt=(--model models/ahead-code --heads-only --heads 4 --seq-len 512 --batch 32 --steps "$steps"
  --lr 3e-3 --min-lr 3e-4 --warmup 50 --weight-decay 0.1 --clip 1 --log-every 50
  --checkpoint-every 100000 --data "$data" --heldout "$held")
for arm in real distil; do
  extra=(); [ "$arm" = distil ] && extra=(--distil "$prompts")
  t0=$SECONDS
  deno task train "${opt[@]}" "${extra[@]}" --out "$work/$arm" 2>&1 | tr '\r' '\n' > "$out/$arm.log"
  echo "$arm: $((SECONDS - t0)) s"; grep -E "self-distillation: [0-9]+ tokens" "$out/$arm.log"; tail -1 "$out/$arm.log"
  cp "$work/$arm/run.json" "$out/$arm-run.json" 2>/dev/null
  deno run -A --unstable-webgpu tools/eval_model.ts --model "$work/$arm" --heldout "$held" \
    --prompts "${EVAL_PROMPTS:-20}" --tokens 256 --json "$out/$arm-eval.json" > /dev/null 2> "$out/$arm-eval.err" ||
    tail -5 "$out/$arm-eval.err"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| heads trained on | head accuracy 1 / 2 / 3 / 4 (real held-out text) | tokens/step | speculative x greedy |")
print("| --- | --- | ---: | ---: |")
for arm in ["real", "distil"]:
    try:
        j = json.load(open(f"{out}/{arm}-eval.json"))
    except OSError:
        print(f"| {arm} | failed | | |"); continue
    acc = " / ".join(f"{100 * a:.1f}" for a in j["accuracy"])
    print(f"| {arm} | {acc}% | {j['speculative']['tokensPerStep']:.2f} | {j['speedup']:.2f}x |")
PY
