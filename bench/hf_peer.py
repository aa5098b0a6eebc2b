"""Peer benchmark: HF transformers greedy decoding of the same Llama shape as bench/decode.ts
model (a) (random init, fp16, CUDA), 512 tokens after a 16-token prompt, with the dynamic and the
static KV cache.

    python3 bench/hf_peer.py [--tokens 512] [--repeats 3] [--json FILE]

Each setting is warmed up twice with exactly the arguments of the timed runs. A static cache is
compiled for each cache length, so a warm-up with another `max_new_tokens` would put the
compilation inside the timed run (an earlier version of this script did that and reported 23
tokens/s instead of ~400). The figure reported is the fastest of `--repeats` timed runs.

Runs where PyTorch and transformers are installed (the GPU machine); ahead itself needs neither.
"""
import argparse, json, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=512)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--json")
a = p.parse_args()
cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                  num_key_value_heads=8, intermediate_size=8192, max_position_embeddings=a.tokens + 32,
                  rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).to(device="cuda", dtype=torch.float16).eval()
prompt = torch.tensor([[(i * 37 + 11) % 250 for i in range(16)]], device="cuda")
out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "tokens": a.tokens}
for cache in ["dynamic", "static"]:
    kw = dict(max_new_tokens=a.tokens, min_new_tokens=a.tokens, do_sample=False)
    if cache == "static":
        kw["cache_implementation"] = "static"
    try:
        with torch.no_grad():
            warm = []
            for _ in range(2):  # the same arguments as the timed runs: no compilation left inside them
                torch.cuda.synchronize()
                t = time.perf_counter()
                model.generate(prompt, **kw)
                torch.cuda.synchronize()
                warm.append(time.perf_counter() - t)
            runs = []
            for _ in range(a.repeats):
                torch.cuda.synchronize()
                t = time.perf_counter()
                ids = model.generate(prompt, **kw)
                torch.cuda.synchronize()
                runs.append(time.perf_counter() - t)
        n = ids.shape[1] - prompt.shape[1]
        best = min(runs)
        out[cache] = {"tokens": n, "seconds": best, "tokensPerSecond": n / best,
                      "allSeconds": runs, "warmupSeconds": warm}
        print(f"HF transformers {cache} cache: {n} tokens in {best:.3f} s = {n / best:.0f} tokens/s "
              f"(best of {a.repeats}; warm-ups took {', '.join(f'{w:.1f}' for w in warm)} s)")
    except Exception as e:  # report, do not hide
        out[cache] = {"error": repr(e)}
        print(f"HF transformers {cache} cache failed: {e!r}")
if a.json:
    json.dump(out, open(a.json, "w"), indent=2)
