#include "solo/optim/optimizer.h"

#include <cmath>

#include "solo/core/error.h"

namespace solo::optim {

namespace {
Tensor scalar(double v, const Device& d) {
  return Tensor::full({}, v, DType::F32, d);
}
}  // namespace

Optimizer::Optimizer(std::vector<Tensor*> params) : params_(std::move(params)) {
  SOLO_CHECK(!params_.empty(), "optimizer: no parameters given");
}

void Optimizer::zero_grad() {
  for (Tensor* p : params_) p->zero_grad();
}

void Optimizer::step() {
  ++steps_;
  begin_step();
  {
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& p = *params_[i];
      const Tensor g = p.grad();
      if (!g.defined()) continue;
      update(i, p, g, scalar(lr_, p.device()));
    }
  }
  std::vector<Device> devices;
  for (Tensor* p : params_)
    if (std::find(devices.begin(), devices.end(), p->device()) == devices.end())
      devices.push_back(p->device());
  for (const Device& d : devices) sync(d);
}

SGD::SGD(std::vector<Tensor*> params, SGDOptions o) : Optimizer(std::move(params)), o_(o) {
  SOLO_CHECK(o.lr >= 0 && o.momentum >= 0 && o.weight_decay >= 0,
             "SGD: lr, momentum and weight_decay must be non-negative");
  SOLO_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
             "SGD: nesterov needs momentum > 0 and dampening 0");
  lr_ = o.lr;
  momentum_.resize(params_.size());
}

// PyTorch: d = g + wd*p; buf = mu*buf + (1-dampening)*d (buf = d at the first step);
// d = nesterov ? d + mu*buf : buf; p -= lr*d.
void SGD::update(size_t i, Tensor& p, const Tensor& g, const Tensor& lr) {
  Tensor d = o_.weight_decay != 0 ? g + p * o_.weight_decay : g;
  if (o_.momentum != 0) {
    Tensor& buf = momentum_[i];
    buf = buf.defined() ? buf * o_.momentum + d * (1.0 - o_.dampening) : d;
    d = o_.nesterov ? d + buf * o_.momentum : buf;
  }
  p.assign_(p - d * lr);
}

AdamW::AdamW(std::vector<Tensor*> params, AdamWOptions o) : Optimizer(std::move(params)), o_(o) {
  SOLO_CHECK(o.lr >= 0 && o.eps >= 0 && o.weight_decay >= 0, "AdamW: lr, eps and weight_decay ",
             "must be non-negative");
  SOLO_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
             "AdamW: betas must be in [0, 1)");
  lr_ = o.lr;
  m_.resize(params_.size());
  v_.resize(params_.size());
}

void AdamW::begin_step() {
  const Device d = params_.front()->device();
  const auto t = static_cast<double>(steps_);
  bias1_ = scalar(1.0 / (1.0 - std::pow(o_.beta1, t)), d);
  bias2_ = scalar(1.0 / (1.0 - std::pow(o_.beta2, t)), d);
}

// PyTorch AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
void AdamW::update(size_t i, Tensor& p, const Tensor& g, const Tensor& lr) {
  Tensor& m = m_[i];
  Tensor& v = v_[i];
  if (!m.defined()) {
    // Pending, so that a plan sharding the states never makes them whole.
    m = Tensor::full_pending(p.shape(), 0.0, p.dtype(), p.device());
    v = Tensor::full_pending(p.shape(), 0.0, p.dtype(), p.device());
  }
  const Tensor bias1 = bias1_.device() == p.device() ? bias1_ : bias1_.to(p.device());
  const Tensor bias2 = bias2_.device() == p.device() ? bias2_ : bias2_.to(p.device());
  const std::vector<Tensor> next =
      adamw_update(p, g, m, v, lr, bias1, bias2, o_.beta1, o_.beta2, o_.eps, o_.weight_decay);
  p.assign_(next[0]);
  m.assign_(next[1]);
  v.assign_(next[2]);
}

Tensor clip_grad_norm(const std::vector<Tensor*>& params, double max_norm) {
  SOLO_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  NoGradGuard no_grad;
  Tensor total;
  for (Tensor* p : params) {
    const Tensor g = p->grad();
    if (!g.defined()) continue;
    const Tensor sq = sum(g * g);
    total = total.defined() ? total + sq : sq;
  }
  if (!total.defined()) return Tensor::zeros({});
  const Tensor norm = sqrt(total);
  // coef = min(max_norm / (norm + 1e-6), 1)
  const Tensor coef =
      minimum(pow(norm + 1e-6, -1.0) * max_norm, Tensor::full({}, 1.0, DType::F32, norm.device()));
  for (Tensor* p : params)
    if (p->grad().defined()) p->set_grad(p->grad() * coef);
  return norm;
}

double LRSchedule::factor(int64_t step) const {
  if (kind == Kind::Constant) return 1.0;
  if (step < warmup_steps) return static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  const double shape =
      kind == Kind::WarmupCosine ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return min_ratio + (1.0 - min_ratio) * shape;
}

}  // namespace solo::optim
