"""One whole training step of ahead against PyTorch (GPU machine only; the library never needs
Python). tools/train_step_dump.ts writes a model before the step, the batch, every gradient of
ahead's step and the model after its AdamW update; this script rebuilds the same model in
PyTorch (written out here: Llama trunk, with Qwen2's q/k/v and o biases or Qwen3's per-head q/k
norms when the config has them; transformer heads on the shared final norm and tied
unembedding, or Medusa heads u = RMSNorm(h), v_j = u + silu(u W_j^T + b_j) on the shared or
each head's own unembedding), computes the loss (the sum of the heads' mean cross-entropies), the gradients with
autograd and the update with torch.optim.AdamW and clip_grad_norm_, in float64, and compares.

    deno run -A --unstable-webgpu tools/train_step_dump.ts --out DIR [--head-kind medusa [--own-unembedding]]
    python3 tools/torch_step_check.py DIR [--json FILE]

Bounds (ahead computes in f32): loss relative error < 1e-5, each gradient < 1e-4, each weight's
change < 1e-3 and each updated weight < 1e-5 (relative, per tensor). The update is computed in
f32: a change accurate to ~3e-4 on a step of ~1e-3 of the weight moves the weight by ~1e-6 of
itself, so 1e-6 (this script's first bound, exceeded at 1.5e-6) was stricter than f32 allows.
"""
import argparse, json, math, sys
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--json")
a = p.parse_args()
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = "cuda" if torch.cuda.is_available() else "cpu"
cfg = json.load(open(f"{a.dir}/before/config.json"))
batch = json.load(open(f"{a.dir}/batch.json"))
before = load_file(f"{a.dir}/before/model.safetensors")
after = load_file(f"{a.dir}/after/model.safetensors")
ours = load_file(f"{a.dir}/grads.safetensors")
our_losses = json.load(open(f"{a.dir}/losses.json"))

V, D = cfg["vocab_size"], cfg["hidden_size"]
NH, NKV, HD = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
FF, L, EPS = cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["rms_norm_eps"]
THETA = cfg["rope_parameters"]["rope_theta"]
NF = cfg["ahead"]["nFuture"]
KIND = cfg["ahead"].get("headKind", "transformer")
OWN = cfg["ahead"].get("headsOwnUnembedding", False)
QKV_BIAS, O_BIAS, QK_NORM = (cfg["ahead"].get(k, False) for k in ("qkvBias", "oBias", "qkNorm"))
B, T = batch["batch"], batch["seqLen"]
P = {k: v.double().to(dev).requires_grad_() for k, v in before.items()}
ids = torch.tensor(batch["ids"], device=dev).view(B, T)
targets = [torch.tensor(t, device=dev) for t in batch["targets"]]

inv = 1.0 / (THETA ** (torch.arange(0, HD, 2, device=dev, dtype=torch.float64) / HD))
ang = torch.arange(T, device=dev, dtype=torch.float64)[:, None] * inv[None, :]
cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)  # [T, HD]


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope(x):  # x [B, T, heads, HD]; rotate_half pairs i and i + HD/2
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return x * cos[None, :, None, :] + torch.cat([-x2, x1], -1) * sin[None, :, None, :]


def layer(x, pre):
    w = lambda n: P[f"{pre}.{n}"]
    h = rms(x, w("input_layernorm.weight"))
    proj = lambda n: h @ w(f"self_attn.{n}_proj.weight").T + (w(f"self_attn.{n}_proj.bias") if QKV_BIAS else 0)
    q, k = proj("q").view(B, T, NH, HD), proj("k").view(B, T, NKV, HD)
    if QK_NORM:
        q, k = rms(q, w("self_attn.q_norm.weight")), rms(k, w("self_attn.k_norm.weight"))
    q, k = rope(q), rope(k)
    v = proj("v").view(B, T, NKV, HD)
    k, v = (t.repeat_interleave(NH // NKV, dim=2) for t in (k, v))
    s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(HD)
    s = s.masked_fill(torch.ones(T, T, device=dev, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).reshape(B, T, NH * HD)
    x = x + o @ w("self_attn.o_proj.weight").T + (w("self_attn.o_proj.bias") if O_BIAS else 0)
    h = rms(x, w("post_attention_layernorm.weight"))
    return x + (F.silu(h @ w("mlp.gate_proj.weight").T) * (h @ w("mlp.up_proj.weight").T)) @ w("mlp.down_proj.weight").T


lm = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
H = P["model.embed_tokens.weight"][ids]
for l in range(L):
    H = layer(H, f"model.layers.{l}")
if KIND == "medusa":
    u = rms(H, P["model.norm.weight"])
    logits = [u @ lm.T]
    for j in range(NF - 1):
        v = u + F.silu(u @ P[f"medusa_head.{j}.0.linear.weight"].T + P[f"medusa_head.{j}.0.linear.bias"])
        logits.append(v @ (P[f"medusa_head.{j}.1.weight"] if OWN else lm).T)
else:
    outs = [H] + [layer(H, f"mtp_heads.{j}") for j in range(NF - 1)]
    logits = [rms(z, P["model.norm.weight"]) @ lm.T for z in outs]
losses = [F.cross_entropy(z.reshape(B * T, V), targets[j]) for j, z in enumerate(logits)]
loss = sum(losses)
loss.backward()


def rel(x, y):
    x, y = x.double().flatten().cpu(), y.double().flatten().cpu()
    return float((x - y).norm() / max(y.norm(), 1e-300))


rows, ok = [], True
lr_err = max(abs(o - t.item()) / t.item() for o, t in zip(our_losses, losses))
ok &= lr_err < 1e-5
rows.append(("loss of each head", lr_err, 1e-5))
# ahead's parameters fuse q/k/v and gate/up; PyTorch's gradients are concatenated to match.
for name, g in ours.items():
    if name.endswith(".self_attn.qkv"):
        pre = name[: -len("qkv")]
        want = torch.cat([P[pre + f"{x}_proj.weight"].grad.flatten() for x in "qkv"])
    elif name.endswith(".self_attn.qkv_bias"):
        pre = name[: -len("qkv_bias")]
        want = torch.cat([P[pre + f"{x}_proj.bias"].grad.flatten() for x in "qkv"])
    elif name.endswith(".self_attn.qk_norm"):
        pre = name[: -len("qk_norm")]
        want = torch.cat([P[pre + f"{x}_norm.weight"].grad.flatten() for x in "qk"])
    elif name in ("medusa_head.weight", "medusa_head.bias"):
        suffix = "weight" if name.endswith("weight") else "bias"
        want = torch.cat([P[f"medusa_head.{j}.0.linear.{suffix}"].grad.flatten() for j in range(NF - 1)])
    elif name.endswith(".mlp.gate_up"):
        pre = name[: -len("gate_up")]
        want = torch.cat([P[pre + f"{x}_proj.weight"].grad.flatten() for x in ("gate", "up")])
    else:
        want = P[name].grad.flatten()
    e = rel(g, want)
    ok &= e < 1e-4
    rows.append((f"grad {name}", e, 1e-4))

# AdamW: decay on matrices (ahead: every 2-D weight), clipping, the first step's learning rate.
o = batch["optimizer"]
s = o["schedule"]
lr0 = s["maxLr"] * 1 / s["warmupSteps"] if s["warmupSteps"] > 0 else s["maxLr"]
params = list(P.values())
torch.nn.utils.clip_grad_norm_(params, max_norm=o["maxNorm"])
opt = torch.optim.AdamW([
    {"params": [t for t in params if t.dim() == 2], "weight_decay": o["weightDecay"]},
    {"params": [t for t in params if t.dim() != 2], "weight_decay": 0.0},
], lr=lr0, betas=(o["beta1"], o["beta2"]), eps=o["eps"])
opt.step()
worst_w = worst_d = 0.0
for name, t in P.items():
    got = after[name].double().to(dev)
    worst_w = max(worst_w, rel(got, t.detach()))
    worst_d = max(worst_d, rel(got - before[name].double().to(dev), t.detach() - before[name].double().to(dev)))
ok &= worst_w < 1e-5 and worst_d < 1e-3
rows.append(("updated weights (worst tensor)", worst_w, 1e-5))
rows.append(("weight changes (worst tensor)", worst_d, 1e-3))

trunk = "qwen2 (q/k/v and o biases)" if QKV_BIAS else "qwen3 (q/k norms)" if QK_NORM else "llama"
print(f"trunk: {trunk}; heads: {KIND}{' (own unembeddings)' if OWN else ''}")
print(f"PyTorch {torch.__version__} float64 on {dev} ({torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'})")
print("| quantity | relative error | bound |")
print("| --- | ---: | ---: |")
for n, e, b in rows:
    print(f"| {n} | {e:.2e} | {b:.0e} |")
print("all within bounds" if ok else "SOME OUT OF BOUNDS")
if a.json:
    json.dump({"torch": torch.__version__, "trunk": trunk, "heads": KIND, "ownUnembedding": OWN, "rows": rows, "ok": ok}, open(a.json, "w"), indent=2)
sys.exit(0 if ok else 1)
