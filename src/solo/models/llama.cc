#include "solo/models/llama.h"

#include "solo/core/error.h"

namespace solo::models {

namespace {

// Each submodule gets its own seed, so initial weights do not depend on creation order.
uint64_t sub_seed(uint64_t seed, uint64_t index) {
  return seed * 1000003ull + index;
}

// Biases start at zero, as Hugging Face initialises them.
std::shared_ptr<nn::Linear> hf_linear(int64_t in, int64_t out, bool bias, uint64_t seed, Device d) {
  auto l = std::make_shared<nn::Linear>(in, out, bias, seed, d);
  l->weight = Tensor::randn({out, in}, 0.02, seed, d);  // Hugging Face initializer_range
  l->weight.requires_grad_();
  return l;
}

}  // namespace

LlamaAttention::LlamaAttention(const LlamaConfig& c, uint64_t seed, Device d) : c_(c) {
  // With an explicit head_dim the attention width q = heads * head_dim need not be hidden_size.
  const int64_t hd = c.head_dim(), q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const bool bias = c.attention_bias, qkv_bias = c.attention_bias || c.qkv_bias;
  q_proj_ = register_module("q_proj", hf_linear(c.hidden_size, q, qkv_bias, sub_seed(seed, 1), d));
  k_proj_ = register_module("k_proj", hf_linear(c.hidden_size, kv, qkv_bias, sub_seed(seed, 2), d));
  v_proj_ = register_module("v_proj", hf_linear(c.hidden_size, kv, qkv_bias, sub_seed(seed, 3), d));
  o_proj_ = register_module("o_proj", hf_linear(q, c.hidden_size, bias, sub_seed(seed, 4), d));
  if (c.qk_norm) {
    q_norm_ = register_module("q_norm", std::make_shared<nn::RMSNorm>(hd, c.rms_norm_eps, d));
    k_norm_ = register_module("k_norm", std::make_shared<nn::RMSNorm>(hd, c.rms_norm_eps, d));
  }
}

Tensor LlamaAttention::forward(const Tensor& x, const Tensor& key_mask) {
  ScopeGuard scope(scope_name());
  const int64_t b = x.shape()[0], t = x.shape()[1], hd = c_.head_dim();
  // [B, T, H*D] -> [B, T, H, D] is a free view; attention works in this layout directly.
  Tensor q = reshape(q_proj_->forward(x), {b, t, c_.num_attention_heads, hd});
  Tensor k = reshape(k_proj_->forward(x), {b, t, c_.num_key_value_heads, hd});
  if (q_norm_) q = q_norm_->forward(q), k = k_norm_->forward(k);  // per head, before RoPE
  q = rope(q, c_.rope);
  k = rope(k, c_.rope);
  const Tensor v = reshape(v_proj_->forward(x), {b, t, c_.num_key_value_heads, hd});
  // Mistral: each query sees the last sliding_window keys (itself included), as transformers'
  // sliding_window_causal mask; a sequence no longer than the window is plain causal.
  const int64_t window = c_.sliding_window && t > *c_.sliding_window ? *c_.sliding_window : 0;
  const Tensor a = scaled_dot_product_attention(q, k, v, key_mask, true, window);
  return o_proj_->forward(reshape(a, {b, t, c_.num_attention_heads * hd}));
}

LlamaMLP::LlamaMLP(const LlamaConfig& c, uint64_t seed, Device d) {
  const int64_t h = c.hidden_size, m = c.intermediate_size;
  const bool bias = c.mlp_bias;
  gate_proj_ = register_module("gate_proj", hf_linear(h, m, bias, sub_seed(seed, 1), d));
  up_proj_ = register_module("up_proj", hf_linear(h, m, bias, sub_seed(seed, 2), d));
  down_proj_ = register_module("down_proj", hf_linear(m, h, bias, sub_seed(seed, 3), d));
}

Tensor LlamaMLP::forward(const Tensor& x) {
  ScopeGuard scope(scope_name());
  return down_proj_->forward(swiglu(gate_proj_->forward(x), up_proj_->forward(x)));
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& c, uint64_t seed, Device d) {
  input_layernorm_ = register_module(
      "input_layernorm", std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, d));
  self_attn_ =
      register_module("self_attn", std::make_shared<LlamaAttention>(c, sub_seed(seed, 1), d));
  post_attention_layernorm_ = register_module(
      "post_attention_layernorm", std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, d));
  mlp_ = register_module("mlp", std::make_shared<LlamaMLP>(c, sub_seed(seed, 2), d));
}

Tensor LlamaDecoderLayer::forward(const Tensor& x, const Tensor& key_mask) {
  ScopeGuard scope(scope_name());
  const Tensor h = x + self_attn_->forward(input_layernorm_->forward(x), key_mask);
  return h + mlp_->forward(post_attention_layernorm_->forward(h));
}

LlamaModel::LlamaModel(const LlamaConfig& c, uint64_t seed, Device d) {
  embed_tokens_ = register_module(
      "embed_tokens",
      std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size, sub_seed(seed, 0), d));
  embed_tokens_->weight = Tensor::randn({c.vocab_size, c.hidden_size}, 0.02, sub_seed(seed, 0), d);
  embed_tokens_->weight.requires_grad_();
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers_.push_back(register_module(
        "layers." + std::to_string(i),
        std::make_shared<LlamaDecoderLayer>(c, sub_seed(seed, 100 + static_cast<uint64_t>(i)), d)));
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, d));
}

Tensor LlamaModel::forward(const Tensor& input_ids, const Tensor& key_mask) {
  ScopeGuard scope(scope_name());
  Tensor x = embed_tokens_->forward(input_ids);
  for (auto& layer : layers_) x = layer->forward(x, key_mask);
  return norm_->forward(x);
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& c, uint64_t seed, Device d) : c_(c) {
  model_ = register_module("model", std::make_shared<LlamaModel>(c, seed, d));
  if (!c.tie_word_embeddings)
    lm_head_ = register_module("lm_head",
                               hf_linear(c.hidden_size, c.vocab_size, false, sub_seed(seed, 7), d));
}

CausalLMOutput LlamaForCausalLM::forward(const Tensor& input_ids, const Tensor& attention_mask,
                                         const Tensor& labels) {
  SOLO_CHECK(input_ids.shape().rank() == 2,
             "LlamaForCausalLM: input_ids must be [batch, seq], got ", input_ids.shape().str());
  // Dynamic NTK scaling exists to run past max_position_embeddings; other schemes are not
  // trained beyond it.
  SOLO_CHECK(
      c_.rope.type == RopeType::Dynamic || input_ids.shape()[1] <= c_.max_position_embeddings,
      "LlamaForCausalLM: sequence length ", input_ids.shape()[1],
      " exceeds max_position_embeddings ", c_.max_position_embeddings, "; lower --block-size");
  SOLO_CHECK(!is_training() || c_.attention_dropout == 0,
             "LlamaForCausalLM: config attention_dropout is ", c_.attention_dropout,
             " but Solo has no attention dropout; call eval() for inference or set "
             "attention_dropout to 0 in config.json to train without it");
  const Tensor h = model_->forward(input_ids, attention_mask);
  CausalLMOutput out;
  {
    ScopeGuard scope("lm_head");
    out.logits = lm_head_ ? lm_head_->forward(h) : linear(h, model_->embed_tokens().weight);
  }
  if (labels.defined()) out.loss = causal_lm_loss(out.logits, labels);
  return out;
}

std::shared_ptr<LlamaForCausalLM> LlamaForCausalLM::from_pretrained(const std::string& dir,
                                                                    Device d) {
  const io::ModelConfig any = io::load_hf_config(dir);
  const auto* c = std::get_if<LlamaConfig>(&any);
  SOLO_CHECK(c != nullptr, "from_pretrained: ", dir,
             "/config.json describes a gpt2 model, not llama; ", "load it with Gpt2LMHeadModel");
  // Built on meta (nothing allocated), then backed by the mapped checkpoint on d.
  auto model = std::make_shared<LlamaForCausalLM>(*c, 0, meta_device());
  // A tied lm_head.weight in the checkpoint is ignored, as transformers ties it to the input
  // embedding; rotary_emb.inv_freq is a buffer older transformers saved, recomputed here.
  load_checkpoint(*model, dir, d,
                  c->tie_word_embeddings ? std::vector<std::string>{"lm_head.weight"}
                                         : std::vector<std::string>{},
                  {".rotary_emb.inv_freq"});
  return model;
}

void LlamaForCausalLM::save_pretrained(const std::string& dir, const SaveOptions& options) {
  save_checkpoint(*this, c_, dir, options);
}

}  // namespace solo::models
