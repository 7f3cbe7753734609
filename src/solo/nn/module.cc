#include "solo/nn/module.h"

#include <cmath>
#include <set>

#include "solo/core/error.h"

namespace solo::nn {

Tensor& Module::register_parameter(const std::string& name, Tensor& t) {
  SOLO_CHECK(t.defined(), "register_parameter: '", name, "' is undefined");
  t.requires_grad_();
  params_.emplace_back(name, &t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  SOLO_CHECK(m != nullptr, "register_module: '", name, "' is null");
  m->scope_name_ = name;
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) {
  for (auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Tensor*>> out;
  collect("", out);
  return out;
}

std::vector<Tensor*> Module::parameters() {
  std::vector<Tensor*> out;
  std::set<TensorImpl*> seen;  // tied weights appear once
  for (auto& [name, t] : named_parameters())
    if (seen.insert(t->impl()).second) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() {
  int64_t n = 0;
  for (Tensor* t : parameters()) n += t->numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (Tensor* t : parameters()) t->zero_grad();
}

void Module::to(const Device& d) {
  for (Tensor* t : parameters()) {
    if (t->device() == d) continue;
    Tensor moved = t->to(d);
    // Rebind every name sharing this tensor (tied weights stay tied).
    for (auto& [name, p] : named_parameters())
      if (p->impl() == t->impl() && p != t) *p = moved;
    *t = moved;
  }
}

std::map<std::string, Tensor> Module::state_dict() {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out[name] = *t;
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  std::set<std::string> used;
  for (auto& [name, t] : named_parameters()) {
    auto it = state.find(name);
    if (it == state.end()) {
      SOLO_CHECK(!strict, "load_state_dict: parameter '", name, "' is missing from the state");
      continue;
    }
    const Tensor& v = it->second;
    SOLO_CHECK(v.shape() == t->shape(), "load_state_dict: '", name, "' has shape ", v.shape().str(),
               " in the state but ", t->shape().str(), " in the model");
    Tensor value = v.dtype() == t->dtype() ? v : cast(v, t->dtype());
    if (!(value.device() == t->device())) value = value.to(t->device());
    t->assign_(value.detach());
    used.insert(name);
  }
  if (strict)
    for (const auto& [name, v] : state)
      SOLO_CHECK(used.count(name), "load_state_dict: unexpected parameter '", name,
                 "' in the state (the model has no such parameter)");
}

Linear::Linear(int64_t in, int64_t out, bool has_bias, uint64_t seed, Device d) {
  // PyTorch's default scale (kaiming-uniform bound 1/sqrt(in)) as a normal of that std.
  weight = Tensor::randn({out, in}, 1.0 / std::sqrt(static_cast<double>(in)), seed, d);
  register_parameter("weight", weight);
  if (has_bias) {
    bias = Tensor::zeros({out}, DType::F32, d);
    register_parameter("bias", bias);
  }
}
Tensor Linear::forward(const Tensor& x) {
  ScopeGuard scope(scope_name());
  return linear(x, weight, bias);
}

Embedding::Embedding(int64_t num, int64_t dim, uint64_t seed, Device d) {
  weight = Tensor::randn({num, dim}, 1.0, seed, d);
  register_parameter("weight", weight);
}
Tensor Embedding::forward(const Tensor& ids) {
  ScopeGuard scope(scope_name());
  return embedding(weight, ids);
}

RMSNorm::RMSNorm(int64_t dim, double eps_, Device d) : eps(eps_) {
  weight = Tensor::full({dim}, 1.0, DType::F32, d);
  register_parameter("weight", weight);
}
Tensor RMSNorm::forward(const Tensor& x) {
  ScopeGuard scope(scope_name());
  return rms_norm(x, weight, eps);
}

LayerNorm::LayerNorm(int64_t dim, double eps_, Device d) : eps(eps_) {
  weight = Tensor::full({dim}, 1.0, DType::F32, d);
  bias = Tensor::zeros({dim}, DType::F32, d);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}
Tensor LayerNorm::forward(const Tensor& x) {
  ScopeGuard scope(scope_name());
  return layer_norm(x, weight, bias, eps);
}

}  // namespace solo::nn
