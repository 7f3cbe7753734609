// Llama (Hugging Face LlamaForCausalLM): RMSNorm, rotary attention with grouped-query heads,
// SwiGLU MLP. Parameter names are Hugging Face's, so checkpoints load without renaming.
// MistralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM are the same network with the
// differences LlamaConfig names (model_type), and load into this class too.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "solo/io/hf_config.h"
#include "solo/models/causal_lm.h"

namespace solo::models {

using io::LlamaConfig;

class LlamaAttention : public nn::Module {
 public:
  LlamaAttention(const LlamaConfig& c, uint64_t seed, Device d);
  // x [B, T, hidden], key_mask [B, T] or undefined -> [B, T, hidden]
  Tensor forward(const Tensor& x, const Tensor& key_mask);

 private:
  LlamaConfig c_;
  std::shared_ptr<nn::Linear> q_proj_, k_proj_, v_proj_, o_proj_;
  std::shared_ptr<nn::RMSNorm> q_norm_, k_norm_;  // qwen3 only
};

class LlamaMLP : public nn::Module {
 public:
  LlamaMLP(const LlamaConfig& c, uint64_t seed, Device d);
  Tensor forward(const Tensor& x);  // down(silu(gate(x)) * up(x))

 private:
  std::shared_ptr<nn::Linear> gate_proj_, up_proj_, down_proj_;
};

class LlamaDecoderLayer : public nn::Module {
 public:
  LlamaDecoderLayer(const LlamaConfig& c, uint64_t seed, Device d);
  Tensor forward(const Tensor& x, const Tensor& key_mask);

 private:
  std::shared_ptr<nn::RMSNorm> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<LlamaAttention> self_attn_;
  std::shared_ptr<LlamaMLP> mlp_;
};

class LlamaModel : public nn::Module {
 public:
  LlamaModel(const LlamaConfig& c, uint64_t seed, Device d);
  Tensor forward(const Tensor& input_ids, const Tensor& key_mask);  // -> [B, T, hidden]
  nn::Embedding& embed_tokens() { return *embed_tokens_; }

 private:
  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::vector<std::shared_ptr<LlamaDecoderLayer>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
};

class LlamaForCausalLM : public nn::Module {
 public:
  // Weights drawn from N(0, 0.02) with `seed` (norms at 1), as Hugging Face initialises.
  LlamaForCausalLM(const LlamaConfig& c, uint64_t seed = 0, Device d = {});
  static std::shared_ptr<LlamaForCausalLM> from_pretrained(const std::string& dir, Device d = {});
  // The whole checkpoint directory, replaced atomically (see save_checkpoint).
  void save_pretrained(const std::string& dir, const SaveOptions& options = {});

  // input_ids [B, T] (i32/i64); attention_mask [B, T] (1 = token, 0 = pad) or undefined;
  // labels [B, T] with -100 to ignore, or undefined (then loss is undefined).
  CausalLMOutput forward(const Tensor& input_ids, const Tensor& attention_mask = {},
                         const Tensor& labels = {});
  const LlamaConfig& config() const { return c_; }

 private:
  LlamaConfig c_;
  std::shared_ptr<LlamaModel> model_;
  std::shared_ptr<nn::Linear> lm_head_;  // null when tied to the input embedding
};

}  // namespace solo::models
