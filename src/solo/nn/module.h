// Module: a tree of named parameters and child modules, as in PyTorch. Parameter names are
// dotted paths ("model.layers.3.mlp.up_proj.weight"); they are also the module scopes that
// graph nodes record, so the planner can map nodes back to modules.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "solo/tensor/tensor.h"

namespace solo::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of this module and its descendants, depth-first in registration order.
  std::vector<std::pair<std::string, Tensor*>> named_parameters();
  std::vector<Tensor*> parameters();
  int64_t num_parameters();

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();
  // Moves (copies) every parameter to the device.
  void to(const Device& d);

  std::map<std::string, Tensor> state_dict();
  // Copies values by name; with strict, missing or unexpected names and any shape or dtype
  // difference are errors that name the parameter.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

 protected:
  Tensor& register_parameter(const std::string& name, Tensor& t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // The name this module was registered under; forward() opens a scope with it.
  const std::string& scope_name() const { return scope_name_; }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out);
  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::string scope_name_;
  bool training_ = true;
};

// y = x W^T (+ b); W [out, in], b [out].
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, uint64_t seed, Device d = {});
  Tensor forward(const Tensor& x);
  Tensor weight, bias;
};

class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, uint64_t seed, Device d = {});
  Tensor forward(const Tensor& ids);
  Tensor weight;
};

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps, Device d = {});
  Tensor forward(const Tensor& x);
  Tensor weight;
  double eps;
};

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps, Device d = {});
  Tensor forward(const Tensor& x);
  Tensor weight, bias;
  double eps;
};

}  // namespace solo::nn
