// Hugging Face config.json for the model families Solo runs: Llama and GPT-2.
// Field names match transformers' LlamaConfig and GPT2Config. Every field that changes the
// model's maths is either implemented or refused naming it; fields that only affect
// initialisation, caching or generation (initializer_range, use_cache, ...) are ignored.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "solo/core/rope_scaling.h"

namespace solo::io {

// Llama and the families transformers builds the same way: Mistral (a sliding attention
// window), Qwen2 (q/k/v biases) and Qwen3 (RMSNorm of q and k over the head dim).
struct LlamaConfig {
  std::string model_type = "llama";  // "llama", "mistral", "qwen2", "qwen3"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;  // transformers' LlamaConfig default
  // Read from rope_theta + rope_scaling (transformers 4) or rope_parameters (transformers 5).
  RopeScaling rope;
  std::optional<int64_t> explicit_head_dim;  // "head_dim"; absent means hidden / heads
  bool attention_bias = false;               // q/k/v/o biases
  bool mlp_bias = false;                     // gate/up/down biases
  bool qkv_bias = false;                     // q/k/v biases without an o bias (qwen2)
  bool qk_norm = false;                      // q_norm / k_norm over head_dim before RoPE (qwen3)
  // mistral: each query sees the last sliding_window keys, itself included (windowed causal
  // attention); up to the window it equals full causal attention. Unset: full attention.
  std::optional<int64_t> sliding_window;
  // Solo has no attention dropout: a model with a positive one is refused in training mode.
  double attention_dropout = 0;
  bool tie_word_embeddings = false;
  std::optional<std::string> torch_dtype;  // "float16", "bfloat16", "float32"
  std::optional<int64_t> bos_token_id;
  // Llama 3 configs give a list of end-of-sequence ids; Llama 2 a single one.
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;

  int64_t head_dim() const { return explicit_head_dim.value_or(hidden_size / num_attention_heads); }
};

struct Gpt2Config {
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_positions = 0;
  int64_t vocab_size = 0;
  double layer_norm_epsilon = 1e-5;
  std::string activation_function = "gelu_new";
  std::optional<int64_t> n_inner;  // MLP width; null in config.json means 4 * n_embd
  bool tie_word_embeddings = true;
  std::optional<std::string> torch_dtype;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::optional<int64_t> pad_token_id;

  int64_t mlp_width() const { return n_inner ? *n_inner : 4 * n_embd; }
  int64_t head_dim() const { return n_embd / n_head; }
};

using ModelConfig = std::variant<LlamaConfig, Gpt2Config>;

// Parses config.json text; `source` (the file's path) names it in errors, which read
// "config.json at <source>: ...". Fields without effect on the maths are ignored; a missing
// required field, a field of the wrong type, an unsupported model_type, architectures entry,
// rope type or maths-changing option, or inconsistent sizes throw solo::Error.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& source);
// `path` is a config.json file or a directory holding one.
ModelConfig load_hf_config(const std::string& path);

// config.json text with the same field names, plus "model_type" and "architectures"
// (["LlamaForCausalLM"] / ["GPT2LMHeadModel"]). Optional fields that are unset are omitted.
std::string hf_config_json(const ModelConfig& config);
// Writes hf_config_json(config) atomically to `path` (a file path, or a directory to hold
// config.json). Validates the config first, as parsing would.
void write_hf_config(const std::string& path, const ModelConfig& config);

}  // namespace solo::io
