#!/usr/bin/env bash
# The three kinds of heads on the default model's frozen trunk (GPU machine): trains transformer
# heads, Medusa heads and sequential MTP modules heads-only from models/ahead-code on the same
# data and budget, then measures each with tools/eval_model.ts (teacher-forced accuracy per
# head, draft acceptance per slot, tokens/step, tokens/s). Expects a corpus packed as
# .gpu/corpus.tar.xz (corpus/train, corpus/heldout).
#   source .gpu/env.sh && bash tools/gpu_compare_kinds.sh "transformer medusa sequential" STEPS OUTDIR
set -uo pipefail
kinds=${1:-"transformer medusa sequential"}; steps=${2:-1500}; out=${3:-/tmp/out}
mkdir -p /tmp/work "$out" && tar xJf .gpu/corpus.tar.xz -C /tmp/work
for kind in $kinds; do
  if [ "$kind" = shipped ]; then dir=models/ahead-code; else
    dir=/tmp/work/$kind
    deno task train --model models/ahead-code --heads-only --heads 4 --head-kind "$kind" \
      --data /tmp/work/corpus/train --heldout /tmp/work/corpus/heldout --out "$dir" \
      --seq-len 512 --batch 32 --steps "$steps" --lr 3e-3 --min-lr 3e-4 --warmup 100 \
      --weight-decay 0.1 --clip 1 --log-every 100 --checkpoint-every 100000 --time-limit 200 \
      2>&1 | tr '\r' '\n' > "$out/train-$kind.log"
    tail -2 "$out/train-$kind.log"
    cp "$dir/run.json" "$out/run-$kind.json"
  fi
  deno run -A --unstable-webgpu tools/eval_model.ts --model "$dir" --heldout /tmp/work/corpus/heldout \
    --prompts 40 --tokens 256 --window 512 --json "$out/eval-$kind.json" > /dev/null 2>"$out/eval-$kind.err"
  echo "$kind: $(grep -E '"(tokensPerStep|speedup)"' "$out/eval-$kind.json" | tr -d ' \n')"
done
