"""Training peer: the same model and batch shape as `deno task bench --train` (the default
model's: byte vocabulary, 6 layers, dModel 256, 4 query / 2 KV heads of 64, SwiGLU 768, tied
embeddings, 3 transformer heads on the shared norm and unembedding; batch 32 x 512) trained in
PyTorch f32 with TF32 off, AdamW, the loss summed over the 4 heads. Eager and torch.compile; the
faster is the peer's figure. Warm-up steps with exactly the timed steps' shapes first.

    python3 bench/torch_train.py [--steps 20] [--json FILE]
"""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=20)
p.add_argument("--json")
a = p.parse_args()
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
V, D, L, NH, NKV, HD, FF, NF = 256, 256, 6, 4, 2, 64, 768, 4
B, T, EPS = 32, 512, 1e-5
dev = "cuda"


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(D, eps=EPS), nn.RMSNorm(D, eps=EPS)
        self.qkv = nn.Linear(D, (NH + 2 * NKV) * HD, bias=False)
        self.o = nn.Linear(NH * HD, D, bias=False)
        self.gu = nn.Linear(D, 2 * FF, bias=False)
        self.down = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin):
        q, k, v = self.qkv(self.n1(x)).split([NH * HD, NKV * HD, NKV * HD], -1)
        rot = lambda t, h: (t.view(B, T, h, HD) * cos + torch.cat(
            [-t.view(B, T, h, HD)[..., HD // 2:], t.view(B, T, h, HD)[..., : HD // 2]], -1) * sin).transpose(1, 2)
        q, k = rot(q, NH), rot(k, NKV)
        v = v.view(B, T, NKV, HD).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(o.transpose(1, 2).reshape(B, T, NH * HD))
        g, u = self.gu(self.n2(x)).chunk(2, -1)
        return x + self.down(F.silu(g) * u)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.layers = nn.ModuleList(Layer() for _ in range(L))
        self.heads = nn.ModuleList(Layer() for _ in range(NF - 1))
        self.norm = nn.RMSNorm(D, eps=EPS)
        inv = 1.0 / (10000 ** (torch.arange(0, HD, 2).float() / HD))
        ang = torch.arange(T).float()[:, None] * inv[None, :]
        self.register_buffer("cos", torch.cat([ang.cos()] * 2, -1)[None, :, None, :])
        self.register_buffer("sin", torch.cat([ang.sin()] * 2, -1)[None, :, None, :])

    def forward(self, ids, targets):
        h = self.emb(ids)
        for l in self.layers:
            h = l(h, self.cos, self.sin)
        loss = 0
        # Meta's memory-efficient order is an autograd matter here; the loss is the same sum.
        for j, z in enumerate([h] + [hd(h, self.cos, self.sin) for hd in self.heads]):
            logits = self.norm(z) @ self.emb.weight.T
            loss = loss + F.cross_entropy(logits.view(B * T, V), targets[j].view(B * T))
        return loss


torch.manual_seed(0)
ids = torch.randint(0, V, (B, T), device=dev)
targets = torch.randint(0, V, (NF, B, T), device=dev)
out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "batch": B, "seqLen": T}
for mode in ["eager", "compile"]:
    try:
        model = Model().to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
        step_fn = model if mode == "eager" else torch.compile(model)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = step_fn(ids, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        for _ in range(5):  # the timed steps' exact shapes: compilation happens here
            step()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        torch.cuda.synchronize()
        sec = (time.perf_counter() - t) / a.steps
        out[mode] = {"msPerStep": sec * 1000, "tokensPerSecond": B * T / sec}
        print(f"PyTorch f32 (TF32 off), {mode}: {sec * 1000:.2f} ms/step, {B * T / sec / 1000:.1f}k tokens/s", flush=True)
    except Exception as e:  # report, do not hide
        out[mode] = {"error": repr(e)}
        print(f"PyTorch {mode} failed: {e!r}", flush=True)
best = max((out[m] for m in ["eager", "compile"] if "tokensPerSecond" in out[m]), key=lambda r: r["tokensPerSecond"])
out["best"] = best
print(f"best: {best['tokensPerSecond'] / 1000:.1f}k tokens/s")
if a.json:
    json.dump(out, open(a.json, "w"), indent=2)
