#!/usr/bin/env bash
# Trains the default model on the GPU machine in one bounded run, measures it, and writes an
# f16 copy for shipping. Expects the corpus (tools/fetch_corpus.ts) packed as .gpu/corpus.tar.xz.
#   source .gpu/env.sh && bash tools/gpu_train_default.sh SECONDS OUTDIR
set -uo pipefail
secs=${1:-300}; out=${2:-/tmp/out}
mkdir -p /tmp/work "$out" && tar xJf .gpu/corpus.tar.xz -C /tmp/work
deno task train --data /tmp/work/corpus/train --heldout /tmp/work/corpus/heldout --out /tmp/work/run \
  --d-model 256 --layers 6 --n-heads 4 --kv-heads 2 --d-ff 768 --heads 4 --seq-len 512 --batch 32 \
  --steps 4000 --lr 3e-3 --min-lr 3e-4 --warmup 200 --weight-decay 0.1 --clip 1 --log-every 50 \
  --checkpoint-every 100000 --time-limit "$secs" 2>&1 | tr '\r' '\n' > "$out/train.log"
tail -3 "$out/train.log"
cp /tmp/work/run/run.json "$out/run.json"
deno eval "
import { loadModel, saveModel } from './mod.ts';
const m = await loadModel('/tmp/work/run', { dtype: 'f16', onWarning: () => {} });
m.eosIds = [0];
await saveModel(m, '$out/model', { metadata: { trained: 'deno task train' } });
m.dispose();"
deno run -A --unstable-webgpu tools/eval_model.ts --model "$out/model" --heldout /tmp/work/corpus/heldout \
  --prompts 40 --tokens 256 --window 512 --json "$out/eval.json" > /dev/null 2>"$out/eval.err"
grep -E '"(bitsPerByte|accuracy)"' -A4 "$out/eval.json"; grep -E 'tokensPerS|speedup|identical|repeated' "$out/eval.json"
