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

Llama variants (llama_rope_*, llama_bias_head_dim) cover the config fields that change the
maths: rope types linear, dynamic (a batch longer than max_position_embeddings), llama3 and
yarn; an explicit head_dim; attention_bias + mlp_bias with tied embeddings; and the
Llama-shaped families Mistral (a sliding window shorter than the batch), Qwen2 (q/k/v biases)
and Qwen3 (q/k norms). transformers 5
writes the rope fields as rope_parameters; for llama_rope_dynamic and llama_rope_llama3 the
script rewrites config.json in the transformers-4 spelling (rope_theta + rope_scaling, the
dynamic one with the legacy "type" key) and checks that transformers reads it back to the
same logits. Each variant also prints how far its logits are from the same weights run with
plain RoPE (or without biases), so a golden file that does not exercise its feature shows.

Run from the repository root:  python3 tests/reference/make_golden.py [name ...]
(no names: all). Needs torch, transformers, safetensors (PyPI); CI does not run it.
Files were written with torch 2.15.0, transformers 5.24.0, safetensors 0.8.0.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

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


# Tiny Llama variants: vocab 64, hidden 32, 2 layers (a few hundred KB per golden file).
VARIANT_BASE = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                    rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=False,
                    mlp_bias=False, hidden_act="silu")
VARIANTS = {
    # transformers-5 spelling, as save_pretrained writes it.
    "llama_rope_linear": dict(rope_parameters=dict(rope_type="linear", factor=2.0,
                                                   rope_theta=10000.0)),
    # max_position_embeddings 8 < the batch's 16 tokens: the NTK base grows with the length.
    "llama_rope_dynamic": dict(max_position_embeddings=8,
                               rope_parameters=dict(rope_type="dynamic", factor=2.0,
                                                    rope_theta=10000.0)),
    # head_dim 8, theta 1e4: wavelengths 6.3 (kept), 63 (blended), 628 and 6283 (scaled).
    "llama_rope_llama3": dict(max_position_embeddings=256,
                              rope_parameters=dict(rope_type="llama3", factor=8.0,
                                                   low_freq_factor=1.0, high_freq_factor=4.0,
                                                   original_max_position_embeddings=128,
                                                   rope_theta=10000.0)),
    # Explicit head_dim 16 (hidden / heads is 8); the correction range ramps over dims 0..3 and
    # the attention factor is 0.1 ln 4 + 1.
    "llama_rope_yarn": dict(head_dim=16, max_position_embeddings=256,
                            rope_parameters=dict(rope_type="yarn", factor=4.0,
                                                 original_max_position_embeddings=64,
                                                 rope_theta=10000.0)),
    "llama_bias_head_dim": dict(head_dim=12, attention_bias=True, mlp_bias=True,
                                tie_word_embeddings=True,
                                rope_parameters=dict(rope_type="default", rope_theta=500000.0)),
    # Llama-shaped families. Mistral's window of 6 is shorter than the batch's 16 tokens: each
    # query sees itself and the 5 keys before it (transformers' sliding_window_causal mask).
    # Not 5: the last pad query of row 1 would see only pads, which Solo's attention answers
    # with zeros and transformers' eager softmax with the mean of the masked values.
    "mistral_tiny": dict(sliding_window=6,
                         rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
    "qwen2_tiny": dict(tie_word_embeddings=True,
                       rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    "qwen3_tiny": dict(head_dim=16, rope_parameters=dict(rope_type="default",
                                                         rope_theta=1000000.0)),
}
FAMILIES = {"mistral": (MistralConfig, MistralForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
            "qwen3": (Qwen3Config, Qwen3ForCausalLM)}
# Rewritten in the transformers-4 spelling after save_pretrained.
TRANSFORMERS4_SPELLING = {"llama_rope_dynamic": "type", "llama_rope_llama3": "rope_type"}


def to_transformers4_spelling(hf_dir, type_key):
    path = os.path.join(hf_dir, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    params = cfg.pop("rope_parameters")
    cfg["rope_theta"] = params.pop("rope_theta")
    params[type_key] = params.pop("rope_type")
    cfg["rope_scaling"] = params
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def logits_of(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def record_variant(name):
    cfg_dict = dict(VARIANT_BASE, **VARIANTS[name])
    config_class, model_class = FAMILIES.get(name.split("_")[0], (LlamaConfig, LlamaForCausalLM))
    if config_class is not LlamaConfig:
        for k in ("attention_bias", "mlp_bias"):
            cfg_dict.pop(k)
    torch.manual_seed(10)
    model = model_class(config_class(**cfg_dict, attn_implementation="eager"))
    with torch.no_grad():  # larger init than HF's 0.02; biases and q/k norms off their init
        for k, p in model.named_parameters():
            if p.dim() == 2 or k.endswith(".bias"):
                p.normal_(0, 0.08)
            elif k.endswith("q_norm.weight") or k.endswith("k_norm.weight"):
                p.normal_(1, 0.2)
    ids, mask, _ = batch(cfg_dict["vocab_size"])
    # How much the feature moves the logits: the same weights with plain RoPE / no biases.
    plain = dict(VARIANT_BASE, **VARIANTS[name])
    plain.pop("sliding_window", None)
    plain = dict(plain, rope_parameters=dict(rope_type="default",
                                                rope_theta=cfg_dict["rope_parameters"]["rope_theta"]),
                 max_position_embeddings=max(16, cfg_dict["max_position_embeddings"]))
    if plain["attention_bias"]:
        plain.update(attention_bias=False, mlp_bias=False)
    other = LlamaForCausalLM(LlamaConfig(**plain, attn_implementation="eager"))
    other.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.endswith(".bias")}, strict=False)
    want = logits_of(model, ids, mask)
    print(name, "max |logits - plain|", (want - logits_of(other, ids, mask)).abs().max().item())
    record(name, model, cfg_dict)
    hf_dir = os.path.join(OUT, name + "_hf")
    if name in TRANSFORMERS4_SPELLING:
        to_transformers4_spelling(hf_dir, TRANSFORMERS4_SPELLING[name])
        again = LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager")
        got = logits_of(again, ids, mask)
        assert torch.equal(got, want), f"{name}: transformers-4 spelling reads back differently"
        print(name, "transformers-4 spelling reads back to the same logits")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    wanted = set(sys.argv[1:])
    for name in VARIANTS:
        if not wanted or name in wanted:
            record_variant(name)
    if wanted and not wanted & {"llama_tiny", "gpt2_tiny"}:
        return
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
