#!/usr/bin/env python3
"""PyTorch eager baseline for bench_llama_step: the same Llama shapes (transformers'
LlamaForCausalLM, fp32, eager attention via SDPA), AdamW, same batch, same thread count.
Prints one line: "pytorch: <tokens/s> tokens/s, <s> s/step"."""
import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=5)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--layers", type=int, default=8)
p.add_argument("--hidden", type=int, default=512)
p.add_argument("--ffn", type=int, default=1376)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--kv-heads", type=int, default=8)
p.add_argument("--device", default="cpu")
p.add_argument("--bf16", action="store_true", help="autocast to bf16, f32 master weights")
p.add_argument("--threads", type=int, default=torch.get_num_threads())
a = p.parse_args()
torch.set_num_threads(a.threads)
cfg = LlamaConfig(vocab_size=32000, hidden_size=a.hidden, intermediate_size=a.ffn,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads,
                  num_key_value_heads=min(a.kv_heads, a.heads),
                  max_position_embeddings=max(2048, a.seq), rms_norm_eps=1e-5,
                  tie_word_embeddings=False)
model = LlamaForCausalLM(cfg).to(a.device)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = (torch.arange(a.batch * a.seq) * 7919 % 32000).reshape(a.batch, a.seq).to(a.device)


def step():
    with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.bf16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.item()


def sync():
    if a.device == "cuda":
        torch.cuda.synchronize()


step()
sync()
start = time.perf_counter()
for _ in range(a.steps):
    loss = step()
sync()
secs = (time.perf_counter() - start) / a.steps
print(f"pytorch: {a.batch * a.seq / secs:.1f} tokens/s, {secs:.3f} s/step, "
      f"{sum(p.numel() for p in model.parameters())} params, loss {loss:.4f}, "
      f"threads {torch.get_num_threads()}")
