// Optimizers with PyTorch semantics. step() appends the update to the step graph and
// flushes it: forward, backward and update run as one graph. Values that change from step
// to step (learning rate, bias corrections) enter the graph as 0-d tensors, not attributes,
// so every step has the same graph structure and reuses the same plan.
#pragma once
#include <functional>
#include <vector>

#include "solo/tensor/tensor.h"

namespace solo::optim {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor*> params);
  virtual ~Optimizer() = default;
  // Updates every parameter that has a gradient, then flushes the step graph.
  void step();
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  int64_t steps() const { return steps_; }

 protected:
  // Appends the update of one parameter; `lr` is a 0-d tensor on the parameter's device.
  virtual void update(size_t index, Tensor& param, const Tensor& grad, const Tensor& lr) = 0;
  virtual void begin_step() {}
  std::vector<Tensor*> params_;
  double lr_ = 1e-3;
  int64_t steps_ = 0;
};

struct SGDOptions {
  double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor*> params, SGDOptions options);

 private:
  void update(size_t index, Tensor& param, const Tensor& grad, const Tensor& lr) override;
  SGDOptions o_;
  std::vector<Tensor> momentum_;
};

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor*> params, AdamWOptions options);

 private:
  void begin_step() override;
  void update(size_t index, Tensor& param, const Tensor& grad, const Tensor& lr) override;
  AdamWOptions o_;
  std::vector<Tensor> m_, v_;
  Tensor bias1_, bias2_;  // 1 / (1 - beta^t), per step
};

// Scales gradients in place (lazily) so their global L2 norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_; returns the norm before clipping (a pending 0-d tensor).
Tensor clip_grad_norm(const std::vector<Tensor*>& params, double max_norm);

// Learning-rate schedules: the multiplier of the base rate at step s (0-based).
struct LRSchedule {
  enum class Kind { Constant, WarmupCosine, WarmupLinear } kind = Kind::Constant;
  int64_t warmup_steps = 0, total_steps = 0;
  double min_ratio = 0.0;  // floor of the decay, as a fraction of the base rate
  double factor(int64_t step) const;
};

}  // namespace solo::optim
