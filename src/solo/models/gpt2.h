// GPT-2 (Hugging Face GPT2LMHeadModel): learned positions, pre-LayerNorm blocks, GELU (tanh)
// MLP, lm_head tied to the token embedding. Its projections are Hugging Face "Conv1D"s:
// weight [in, out], y = x W + b.
#pragma once
#include <memory>
#include <vector>

#include "solo/io/hf_config.h"
#include "solo/models/causal_lm.h"

namespace solo::models {

using io::Gpt2Config;

class Conv1D : public nn::Module {
 public:
  Conv1D(int64_t in, int64_t out, uint64_t seed, Device d);
  Tensor forward(const Tensor& x);
  Tensor weight, bias;
};

class Gpt2Block : public nn::Module {
 public:
  Gpt2Block(const Gpt2Config& c, uint64_t seed, Device d);
  Tensor forward(const Tensor& x, const Tensor& key_mask);

 private:
  Gpt2Config c_;
  std::shared_ptr<nn::LayerNorm> ln_1_, ln_2_;
  std::shared_ptr<Conv1D> c_attn_, attn_proj_, c_fc_, mlp_proj_;
};

class Gpt2LMHeadModel : public nn::Module {
 public:
  Gpt2LMHeadModel(const Gpt2Config& c, uint64_t seed = 0, Device d = {});
  static std::shared_ptr<Gpt2LMHeadModel> from_pretrained(const std::string& dir, Device d = {});
  // The whole checkpoint directory, replaced atomically (see save_checkpoint).
  void save_pretrained(const std::string& dir, const SaveOptions& options = {});
  CausalLMOutput forward(const Tensor& input_ids, const Tensor& attention_mask = {},
                         const Tensor& labels = {});
  const Gpt2Config& config() const { return c_; }

 private:
  Gpt2Config c_;
  Tensor wte_, wpe_;
  std::vector<std::shared_ptr<Gpt2Block>> blocks_;
  std::shared_ptr<nn::LayerNorm> ln_f_;
};

}  // namespace solo::models
