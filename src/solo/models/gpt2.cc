#include "solo/models/gpt2.h"

#include <cmath>

#include "solo/core/error.h"

namespace solo::models {

namespace {
uint64_t sub_seed(uint64_t seed, uint64_t index) {
  return seed * 1000003ull + index;
}

// A module holding submodules under dotted names ("attn.c_attn") needs intermediate
// modules for the scopes and parameter names to nest as Hugging Face's do.
class Holder : public nn::Module {
 public:
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
  void param(const std::string& name, Tensor& t) { register_parameter(name, t); }
};
}  // namespace

Conv1D::Conv1D(int64_t in, int64_t out, uint64_t seed, Device d) {
  weight = Tensor::randn({in, out}, 0.02, seed, d);
  bias = Tensor::zeros({out}, DType::F32, d);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor Conv1D::forward(const Tensor& x) {
  ScopeGuard scope(scope_name());
  return matmul(x, weight) + bias;
}

Gpt2Block::Gpt2Block(const Gpt2Config& c, uint64_t seed, Device d) : c_(c) {
  const int64_t e = c.n_embd;
  ln_1_ = register_module("ln_1", std::make_shared<nn::LayerNorm>(e, c.layer_norm_epsilon, d));
  auto attn = register_module("attn", std::make_shared<Holder>());
  c_attn_ = attn->add("c_attn", std::make_shared<Conv1D>(e, 3 * e, sub_seed(seed, 1), d));
  attn_proj_ = attn->add("c_proj", std::make_shared<Conv1D>(e, e, sub_seed(seed, 2), d));
  ln_2_ = register_module("ln_2", std::make_shared<nn::LayerNorm>(e, c.layer_norm_epsilon, d));
  auto mlp = register_module("mlp", std::make_shared<Holder>());
  c_fc_ = mlp->add("c_fc", std::make_shared<Conv1D>(e, c.mlp_width(), sub_seed(seed, 3), d));
  mlp_proj_ = mlp->add("c_proj", std::make_shared<Conv1D>(c.mlp_width(), e, sub_seed(seed, 4), d));
}

Tensor Gpt2Block::forward(const Tensor& x, const Tensor& key_mask) {
  ScopeGuard scope(scope_name());
  const int64_t b = x.shape()[0], t = x.shape()[1], e = c_.n_embd, hd = c_.head_dim();
  Tensor h;
  {
    ScopeGuard attn("attn");
    const Tensor qkv = c_attn_->forward(ln_1_->forward(x));  // [B, T, 3E]
    auto head = [&](int i) {
      return reshape(slice(qkv, 2, i * e, (i + 1) * e), {b, t, c_.n_head, hd});
    };
    const Tensor a = scaled_dot_product_attention(head(0), head(1), head(2), key_mask, true);
    h = x + attn_proj_->forward(reshape(a, {b, t, e}));
  }
  ScopeGuard mlp("mlp");
  return h + mlp_proj_->forward(gelu(c_fc_->forward(ln_2_->forward(h)), /*tanh=*/true));
}

Gpt2LMHeadModel::Gpt2LMHeadModel(const Gpt2Config& c, uint64_t seed, Device d) : c_(c) {
  SOLO_CHECK(c.activation_function == "gelu_new" || c.activation_function == "gelu_pytorch_tanh",
             "GPT-2: activation_function '", c.activation_function,
             "' is not supported; use gelu_new");
  auto transformer = register_module("transformer", std::make_shared<Holder>());
  wte_ = Tensor::randn({c.vocab_size, c.n_embd}, 0.02, sub_seed(seed, 1), d);
  wpe_ = Tensor::randn({c.n_positions, c.n_embd}, 0.01, sub_seed(seed, 2), d);
  transformer->param("wte.weight", wte_);
  transformer->param("wpe.weight", wpe_);
  for (int64_t i = 0; i < c.n_layer; ++i)
    blocks_.push_back(transformer->add(
        "h." + std::to_string(i),
        std::make_shared<Gpt2Block>(c, sub_seed(seed, 100 + static_cast<uint64_t>(i)), d)));
  ln_f_ =
      transformer->add("ln_f", std::make_shared<nn::LayerNorm>(c.n_embd, c.layer_norm_epsilon, d));
}

CausalLMOutput Gpt2LMHeadModel::forward(const Tensor& input_ids, const Tensor& attention_mask,
                                        const Tensor& labels) {
  SOLO_CHECK(input_ids.shape().rank() == 2, "GPT-2: input_ids must be [batch, seq], got ",
             input_ids.shape().str());
  const int64_t t = input_ids.shape()[1];
  SOLO_CHECK(t <= c_.n_positions, "GPT-2: sequence length ", t, " exceeds n_positions ",
             c_.n_positions, "; lower --block-size");
  Tensor x;
  {
    ScopeGuard scope("transformer");
    x = embedding(wte_, input_ids) + slice(wpe_, 0, 0, t);  // positions 0..T-1
    for (auto& block : blocks_) x = block->forward(x, attention_mask);
    x = ln_f_->forward(x);
  }
  CausalLMOutput out;
  {
    ScopeGuard scope("lm_head");
    out.logits = linear(x, wte_);  // tied: logits = x wte^T
  }
  if (labels.defined()) out.loss = causal_lm_loss(out.logits, labels);
  return out;
}

std::shared_ptr<Gpt2LMHeadModel> Gpt2LMHeadModel::from_pretrained(const std::string& dir,
                                                                  Device d) {
  const io::ModelConfig any = io::load_hf_config(dir);
  const auto* c = std::get_if<Gpt2Config>(&any);
  SOLO_CHECK(c != nullptr, "from_pretrained: ", dir,
             "/config.json describes a llama model, not gpt2; ", "load it with LlamaForCausalLM");
  // Built on meta (nothing allocated), then backed by the mapped checkpoint on d.
  auto model = std::make_shared<Gpt2LMHeadModel>(*c, 0, meta_device());
  // attn.bias / attn.masked_bias are the causal-mask buffers older transformers saved.
  load_checkpoint(*model, dir, d, {}, {".attn.bias", ".attn.masked_bias"});
  return model;
}

void Gpt2LMHeadModel::save_pretrained(const std::string& dir, const SaveOptions& options) {
  save_checkpoint(*this, c_, dir, options);
}

}  // namespace solo::models
