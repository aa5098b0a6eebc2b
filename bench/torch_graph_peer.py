"""Peer benchmark: PyTorch at its fastest for batch-1 greedy decoding, as a floor under HF
transformers. A hand-written Llama decode step (fused q/k/v and gate/up weights, a static KV
cache, SDPA over the cache with a position mask, greedy argmax written back into the input
token) captured in one CUDA graph, so that a token costs one graph launch and no host work.
Same shape and weights as bench/hf_peer.py (random init, seed 0, fp16): model (a) of
bench/decode.ts, 512 tokens after a 16-token prompt.

    python3 bench/torch_graph_peer.py [--tokens 512] [--repeats 3] [--json FILE]

Checks itself against transformers on the same weights: the logits of the first decode step,
and the generated tokens against `model.generate` (greedy, dynamic cache). It times graphs of 1
and of 16 steps and reports the faster, best of `--repeats` runs after two warm-up runs.
Runs on the GPU machine only (PyTorch, transformers).
"""
import argparse, json, time
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=512)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--json")
a = p.parse_args()

V, D, L, NH, NKV, FF = 32000, 2048, 16, 32, 8, 8192
HD, EPS, THETA = D // NH, 1e-5, 10000.0
MAXLEN = a.tokens + 32
cfg = LlamaConfig(vocab_size=V, hidden_size=D, num_hidden_layers=L, num_attention_heads=NH,
                  num_key_value_heads=NKV, intermediate_size=FF, max_position_embeddings=MAXLEN,
                  rope_theta=THETA, rms_norm_eps=EPS, tie_word_embeddings=False)
torch.manual_seed(0)
hf = LlamaForCausalLM(cfg).to(device="cuda", dtype=torch.float16).eval()
prompt = [(i * 37 + 11) % 250 for i in range(16)]
P = len(prompt)
dev, f16 = "cuda", torch.float16
W = hf.state_dict()

def lw(l, name):
    return W[f"model.layers.{l}.{name}.weight"]

qkv_w = [torch.cat([lw(l, "self_attn.q_proj"), lw(l, "self_attn.k_proj"), lw(l, "self_attn.v_proj")]).contiguous() for l in range(L)]
o_w = [lw(l, "self_attn.o_proj") for l in range(L)]
gu_w = [torch.cat([lw(l, "mlp.gate_proj"), lw(l, "mlp.up_proj")]).contiguous() for l in range(L)]
down_w = [lw(l, "mlp.down_proj") for l in range(L)]
ln1 = [lw(l, "input_layernorm") for l in range(L)]
ln2 = [lw(l, "post_attention_layernorm") for l in range(L)]
emb, norm, lm = W["model.embed_tokens.weight"], W["model.norm.weight"], W["lm_head.weight"]

inv_freq = 1.0 / (THETA ** (torch.arange(0, HD, 2, device=dev, dtype=torch.float32) / HD))
freqs = torch.outer(torch.arange(MAXLEN, device=dev, dtype=torch.float32), inv_freq)
cos_t = torch.cat([freqs, freqs], -1).cos().to(f16)  # [MAXLEN, HD], as HF builds it
sin_t = torch.cat([freqs, freqs], -1).sin().to(f16)
kc = torch.zeros(L, 1, NKV, MAXLEN, HD, device=dev, dtype=f16)
vc = torch.zeros_like(kc)
tok = torch.zeros(1, device=dev, dtype=torch.long)  # input token of the next step
pos = torch.zeros(1, device=dev, dtype=torch.long)  # its position
seq = torch.zeros(MAXLEN + 64, device=dev, dtype=torch.long)  # seq[pos + 1] = the token picked
ar = torch.arange(MAXLEN, device=dev)
logits_out = torch.zeros(1, V, device=dev, dtype=f16)

def rms(x, w):
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(f16)

def rope(x, c, s):
    x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
    return x * c + torch.cat([-x2, x1], -1) * s

def step():
    x = emb[tok]  # [1, D]
    c, s = cos_t[pos], sin_t[pos]  # [1, HD]
    mask = (ar <= pos).view(1, 1, 1, MAXLEN)
    for l in range(L):
        qkv = rms(x, ln1[l]) @ qkv_w[l].T
        q = rope(qkv[:, : NH * HD].view(1, NH, 1, HD), c, s)
        k = rope(qkv[:, NH * HD : (NH + NKV) * HD].view(1, NKV, 1, HD), c, s)
        v = qkv[:, (NH + NKV) * HD :].view(1, NKV, 1, HD)
        kc[l].index_copy_(2, pos, k)
        vc[l].index_copy_(2, pos, v)
        o = F.scaled_dot_product_attention(q, kc[l], vc[l], attn_mask=mask, enable_gqa=True)
        x = x + o.reshape(1, NH * HD) @ o_w[l].T
        g, u = (rms(x, ln2[l]) @ gu_w[l].T).split(FF, -1)
        x = x + (F.silu(g) * u) @ down_w[l].T
    logits = rms(x, norm) @ lm.T
    logits_out.copy_(logits)
    tok.copy_(logits.argmax(-1))
    seq.index_copy_(0, pos + 1, tok)
    pos.add_(1)

def reset():
    kc.zero_(); vc.zero_(); pos.zero_(); seq.zero_()

def prefill(run_step):
    """Positions 0 .. P-2 of the prompt (untimed); leaves tok = the last prompt token."""
    reset()
    for t in prompt[:-1]:
        tok.fill_(t)
        run_step()
    tok.fill_(prompt[-1])

out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "tokens": a.tokens}
with torch.no_grad():
    # Correctness against transformers on the same weights.
    prefill(step)
    step()
    ref = hf(torch.tensor([prompt], device=dev)).logits[0, -1].float()
    err = ((logits_out[0].float() - ref).norm() / ref.norm()).item()
    hf_ids = hf.generate(torch.tensor([prompt], device=dev), max_new_tokens=a.tokens,
                         min_new_tokens=a.tokens, do_sample=False)[0, P:].tolist()

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()  # warm up kernels and the allocator outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    best = None
    for per_graph in [1, 16]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(per_graph):
                step()
        launches = -(-a.tokens // per_graph)
        times = []
        for r in range(2 + a.repeats):  # two warm-up runs with the timed run's arguments
            prefill(step)
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(launches):
                graph.replay()
            torch.cuda.synchronize()
            if r >= 2:
                times.append(time.perf_counter() - t)
        n = launches * per_graph
        got = seq[P : P + a.tokens].tolist()
        same = next((i for i, (x, y) in enumerate(zip(got, hf_ids)) if x != y), len(hf_ids))
        tps = n / min(times)
        res = {"stepsPerGraph": per_graph, "tokens": n, "seconds": min(times), "tokensPerSecond": tps,
               "allSeconds": times, "tokensEqualToHfGenerate": same}
        out[f"graph{per_graph}"] = res
        print(f"PyTorch CUDA graph, {per_graph} step(s) per graph: {n} tokens in {min(times):.3f} s = "
              f"{tps:.0f} tokens/s (best of {a.repeats}); first {same} tokens equal HF generate")
        if best is None or tps > best["tokensPerSecond"]:
            best = res
        del graph
    out["best"] = best
    out["firstStepLogitsRelativeErrorVsHf"] = err
    print(f"first decode step logits vs HF forward: relative error {err:.2e}")
    bytes_per_token = sum(t.numel() * 2 for t in qkv_w + o_w + gu_w + down_w) + lm.numel() * 2
    out["weightGBps"] = bytes_per_token * best["tokensPerSecond"] / 1e9
    print(f"best: {best['tokensPerSecond']:.0f} tokens/s, {out['weightGBps']:.0f} GB/s of weights")
if a.json:
    json.dump(out, open(a.json, "w"), indent=2)
