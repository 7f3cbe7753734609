#!/usr/bin/env python3
"""Writes the golden files that tests/test_golden_*.cc replay.

For a tiny Llama (Hugging Face LlamaForCausalLM) and a tiny GPT-2 (GPT2LMHeadModel) it
records, in one safetensors file per model (format_version in the metadata):
  - every weight, under its Hugging Face name
  - input_ids, attention_mask (right padding) and labels (-100 on pads)
  - logits and loss of one forward pass in training mode (dropout 0)
  - grad.<name> for every parameter after one backward
  - adamw_losses: the loss before each of 10 AdamW steps on the same batch
and saves the initial model with save_pretrained into <name>_hf/ (an independent writer
of config.json + model.safetensors, read back by the C++ loader).

Run from the repository root:  python3 tests/reference/make_golden.py
Needs torch, transformers, safetensors (PyPI); CI does not run it.
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

FORMAT_VERSION = "1"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
STEPS = 10


def batch(vocab, b=2, t=16, pad=(0, 5)):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    for row, n in enumerate(pad):
        if n:
            mask[row, t - n:] = 0
            ids[row, t - n:] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    return ids, mask, labels


def record(name, model, config_dict):
    torch.manual_seed(0)
    model.train()
    ids, mask, labels = batch(config_dict["vocab_size"])
    hf_dir = os.path.join(OUT, name + "_hf")
    shutil.rmtree(hf_dir, ignore_errors=True)
    model.save_pretrained(hf_dir, safe_serialization=True)

    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    for k, p in model.named_parameters():
        tensors["grad." + k] = p.grad.detach().clone().contiguous()
    tensors.update(input_ids=ids, attention_mask=mask, labels=labels,
                   logits=out.logits.detach().contiguous(), loss=out.loss.detach().reshape(()))

    model.zero_grad()
    opt = torch.optim.AdamW(model.parameters(), **ADAMW)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
    tensors["adamw_losses"] = torch.tensor(losses, dtype=torch.float64)
    meta = {"format_version": FORMAT_VERSION, "config": json.dumps(config_dict),
            "adamw": json.dumps(ADAMW), "torch": torch.__version__}
    save_file(tensors, os.path.join(OUT, name + ".safetensors"), metadata=meta)
    print(name, "loss", out.loss.item(), "adamw", losses[0], "->", losses[-1])


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    llama = dict(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                 rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                 attention_bias=False, mlp_bias=False, hidden_act="silu")
    torch.manual_seed(1)
    cfg = LlamaConfig(**llama, attn_implementation="eager")
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger init than HF's 0.02 so that gradients are not tiny
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
    record("llama_tiny", model, llama)

    gpt2 = dict(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                layer_norm_epsilon=1e-5, activation_function="gelu_new", resid_pdrop=0.0,
                embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
    torch.manual_seed(2)
    model = GPT2LMHeadModel(GPT2Config(**gpt2, attn_implementation="eager"))
    record("gpt2_tiny", model, gpt2)


if __name__ == "__main__":
    main()
