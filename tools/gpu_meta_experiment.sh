#!/usr/bin/env bash
# Meta's experiment (Gloeckle et al. 2024): on the same data and trunk budget, heads
# trained jointly with the trunk from scratch against heads added to a next-token-only trunk
# (heads-only mode on the frozen trunk). Writes both models' evaluations (per-head accuracy,
# tokens/step, speculative vs greedy) to OUTDIR.
#   source .gpu/env.sh && bash tools/gpu_meta_experiment.sh DATA HELDOUT OUTDIR STEPS HEADSTEPS [SHAPE...]
# SEQ and BATCH (environment) default to 512 and 32. SHAPE defaults to the default model's (d256, 6 layers); the trunk gets STEPS steps in both
# arms, the heads-only arm then HEADSTEPS more on the frozen trunk.
set -uo pipefail
data=$1; held=$2; out=$3; steps=$4; hsteps=$5; shift 5
seq=${SEQ:-512}; batch=${BATCH:-32}
shape=("$@")
[ ${#shape[@]} -eq 0 ] && shape=(--d-model 256 --layers 6 --n-heads 4 --kv-heads 2 --d-ff 768)
shape+=(--seq-len "$seq" --batch "$batch")
opt=(--lr 3e-3 --min-lr 3e-4 --warmup 100 --weight-decay 0.1 --clip 1 --log-every 50 \
  --checkpoint-every 100000)
work=${WORK:-/tmp/meta}; rm -rf "$work"; mkdir -p "$work" "$out"
train() { local name=$1; shift; local t0=$SECONDS
  deno task train --data "$data" --heldout "$held" "$@" 2>&1 | tr '\r' '\n' > "$out/$name.log"
  echo "$name: $((SECONDS - t0)) s, $(grep -c . "$out/$name.log") log lines"; tail -1 "$out/$name.log"; }
train joint --out "$work/joint" --heads 4 --steps "$steps" "${shape[@]}" "${opt[@]}"
train trunk --out "$work/trunk" --heads 1 --steps "$steps" "${shape[@]}" "${opt[@]}"
train heads --out "$work/heads" --model "$work/trunk" --heads-only --heads 4 --steps "$hsteps" \
  --seq-len "$seq" --batch "$batch" "${opt[@]}"
for arm in joint trunk heads; do cp "$work/$arm/run.json" "$out/$arm-run.json"; done
for arm in joint heads; do
  deno run -A --unstable-webgpu tools/eval_model.ts --model "$work/$arm" --heldout "$held" \
    --prompts "${PROMPTS:-20}" --tokens "${TOKENS:-256}" --window "$seq" \
    --json "$out/$arm-eval.json" > /dev/null 2> "$out/$arm-eval.err" || tail -5 "$out/$arm-eval.err"
done
