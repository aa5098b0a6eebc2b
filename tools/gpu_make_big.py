"""Writes a random-initialised Llama of the bench's model (a) shape (1.1B parameters, fp16,
~2.2 GB) with save_pretrained, for measuring loadModel's peak host memory and
`deno task bench --model` on a loaded checkpoint (GPU machine only).

    python3 tools/gpu_make_big.py DIR
"""
import sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM

cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                  num_key_value_heads=8, intermediate_size=8192, max_position_embeddings=2048,
                  rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.float16)
model.save_pretrained(sys.argv[1], safe_serialization=True, max_shard_size="1GB")
print("saved", sys.argv[1])
