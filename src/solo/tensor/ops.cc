// Tensor ops: each resolves its operands to values of the device's pending graph and calls
// the graph builder of the same name (ir/ops.h).
#include "solo/ir/ops.h"
#include "solo/core/error.h"
#include "solo/tensor/tensor_impl.h"

namespace solo {

namespace {

// Builds one op on the device of the first defined operand. Undefined operands (optional
// ones such as a bias) map to kNoValue.
template <class F>
Tensor lazy(std::initializer_list<const Tensor*> operands, F&& build) {
  const Tensor* first = nullptr;
  for (const Tensor* t : operands)
    if (t->defined()) {
      first = t;
      break;
    }
  SOLO_CHECK(first != nullptr, "an op was called with no defined operand");
  DeviceContext& ctx = device_context(first->device());
  bool requires_grad = false;
  std::vector<ir::ValueId> v;
  for (const Tensor* t : operands) {
    v.push_back(t->defined() ? ctx.value_of(*t) : ir::kNoValue);
    requires_grad |= t->defined() && t->requires_grad();
  }
  const ir::ValueId out = build(ctx.trace().graph, v);
  return ctx.wrap(out, requires_grad && ir::grad_enabled());
}

thread_local DType t_autocast = DType::F32;

// Under autocast, an f32 operand of a matmul-like op is computed in the autocast dtype.
ir::ValueId autocast_in(ir::Graph& g, ir::ValueId v) {
  if (t_autocast == DType::F32 || g.dtype(v) != DType::F32) return v;
  return ir::cast(g, v, t_autocast);
}
ir::ValueId autocast_out(ir::Graph& g, ir::ValueId v) {
  return g.dtype(v) == DType::F32 ? v : ir::cast(g, v, DType::F32);
}

}  // namespace

AutocastGuard::AutocastGuard(DType compute) : previous_(t_autocast) {
  SOLO_CHECK(compute == DType::F32 || compute == DType::BF16 || compute == DType::F16,
             "autocast: compute dtype must be f32, bf16 or f16, got ", dtype_name(compute));
  t_autocast = compute;
}
AutocastGuard::~AutocastGuard() {
  t_autocast = previous_;
}
DType autocast_dtype() {
  return t_autocast;
}

#define SOLO_BINARY(fn, irfn)                                                                   \
  Tensor fn(const Tensor& a, const Tensor& b) {                                                 \
    return lazy({&a, &b}, [](ir::Graph& g, const auto& v) { return ir::irfn(g, v[0], v[1]); }); \
  }
SOLO_BINARY(operator+, add)
SOLO_BINARY(operator-, sub)
SOLO_BINARY(operator*, mul)
SOLO_BINARY(operator/, div)
SOLO_BINARY(maximum, maximum)
SOLO_BINARY(minimum, minimum)
#undef SOLO_BINARY

#define SOLO_UNARY(fn)                                                              \
  Tensor fn(const Tensor& x) {                                                      \
    return lazy({&x}, [](ir::Graph& g, const auto& v) { return ir::fn(g, v[0]); }); \
  }
SOLO_UNARY(exp)
SOLO_UNARY(log)
SOLO_UNARY(sqrt)
SOLO_UNARY(rsqrt)
SOLO_UNARY(silu)
#undef SOLO_UNARY

Tensor operator+(const Tensor& a, double s) {
  return lazy({&a}, [s](ir::Graph& g, const auto& v) { return ir::add_scalar(g, v[0], s); });
}
Tensor operator*(const Tensor& a, double s) {
  return lazy({&a}, [s](ir::Graph& g, const auto& v) { return ir::mul_scalar(g, v[0], s); });
}
Tensor operator-(const Tensor& a) {
  return lazy({&a}, [](ir::Graph& g, const auto& v) { return ir::neg(g, v[0]); });
}
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  return lazy({&cond, &a, &b},
              [](ir::Graph& g, const auto& v) { return ir::where(g, v[0], v[1], v[2]); });
}
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return lazy({&x, &mask}, [value](ir::Graph& g, const auto& v) {
    return ir::masked_fill(g, v[0], v[1], value);
  });
}
Tensor pow(const Tensor& x, double p) {
  return lazy({&x}, [p](ir::Graph& g, const auto& v) { return ir::pow_scalar(g, v[0], p); });
}
Tensor gelu(const Tensor& x, bool tanh) {
  return lazy({&x}, [tanh](ir::Graph& g, const auto& v) { return ir::gelu(g, v[0], tanh); });
}
Tensor cast(const Tensor& x, DType to) {
  return lazy({&x}, [to](ir::Graph& g, const auto& v) { return ir::cast(g, v[0], to); });
}
Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  return lazy({&x}, [&](ir::Graph& g, const auto& v) { return ir::sum(g, v[0], axes, keepdim); });
}
Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  return lazy({&x}, [&](ir::Graph& g, const auto& v) { return ir::mean(g, v[0], axes, keepdim); });
}
Tensor reshape(const Tensor& x, const Shape& shape) {
  return lazy({&x}, [&](ir::Graph& g, const auto& v) { return ir::reshape(g, v[0], shape); });
}
Tensor permute(const Tensor& x, std::vector<int64_t> perm) {
  return lazy({&x}, [&](ir::Graph& g, const auto& v) { return ir::permute(g, v[0], perm); });
}
Tensor transpose(const Tensor& x, int d0, int d1) {
  return lazy({&x}, [&](ir::Graph& g, const auto& v) { return ir::transpose(g, v[0], d0, d1); });
}
Tensor slice(const Tensor& x, int axis, int64_t start, int64_t end) {
  return lazy({&x},
              [&](ir::Graph& g, const auto& v) { return ir::slice(g, v[0], axis, start, end); });
}
Tensor concat(const std::vector<Tensor>& xs, int axis) {
  SOLO_CHECK(!xs.empty(), "concat: no tensors given");
  DeviceContext& ctx = device_context(xs[0].device());
  std::vector<ir::ValueId> v;
  bool requires_grad = false;
  for (const Tensor& x : xs) {
    v.push_back(ctx.value_of(x));
    requires_grad |= x.requires_grad();
  }
  return ctx.wrap(ir::concat(ctx.trace().graph, v, axis), requires_grad && ir::grad_enabled());
}
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  return lazy({&a, &b}, [&](ir::Graph& g, const auto& v) {
    if (t_autocast == DType::F32) return ir::matmul(g, v[0], v[1], trans_a, trans_b);
    return autocast_out(
        g, ir::matmul(g, autocast_in(g, v[0]), autocast_in(g, v[1]), trans_a, trans_b));
  });
}
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  return lazy({&x, &w, &bias}, [](ir::Graph& g, const auto& v) {
    if (t_autocast == DType::F32) return ir::linear(g, v[0], v[1], v[2]);
    const ir::ValueId y =
        autocast_out(g, ir::linear(g, autocast_in(g, v[0]), autocast_in(g, v[1])));
    return v[2] == ir::kNoValue ? y : ir::add(g, y, v[2]);
  });
}
Tensor embedding(const Tensor& weight, const Tensor& ids) {
  return lazy({&weight, &ids},
              [](ir::Graph& g, const auto& v) { return ir::embedding(g, v[0], v[1]); });
}
Tensor softmax(const Tensor& x, int axis) {
  return lazy({&x}, [axis](ir::Graph& g, const auto& v) { return ir::softmax(g, v[0], axis); });
}
Tensor rms_norm(const Tensor& x, const Tensor& w, double eps) {
  return lazy({&x, &w},
              [eps](ir::Graph& g, const auto& v) { return ir::rms_norm(g, v[0], v[1], eps); });
}
Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  return lazy({&x, &w, &b}, [eps](ir::Graph& g, const auto& v) {
    return ir::layer_norm(g, v[0], v[1], v[2], eps);
  });
}
Tensor rope(const Tensor& x, double theta) {
  return lazy({&x}, [theta](ir::Graph& g, const auto& v) { return ir::rope(g, v[0], theta); });
}
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_mask, bool causal) {
  return lazy({&q, &k, &v, &key_mask}, [causal](ir::Graph& g, const auto& x) {
    if (t_autocast == DType::F32)
      return ir::scaled_dot_product_attention(g, x[0], x[1], x[2], x[3], causal);
    return autocast_out(
        g, ir::scaled_dot_product_attention(g, autocast_in(g, x[0]), autocast_in(g, x[1]),
                                            autocast_in(g, x[2]), x[3], causal));
  });
}
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  return lazy({&logits, &labels}, [ignore_index](ir::Graph& g, const auto& v) {
    return ir::cross_entropy(g, v[0], v[1], ignore_index);
  });
}

std::vector<Tensor> adamw_update(const Tensor& p, const Tensor& grad, const Tensor& m,
                                 const Tensor& v, const Tensor& lr, const Tensor& bias1,
                                 const Tensor& bias2, double beta1, double beta2, double eps,
                                 double weight_decay) {
  DeviceContext& ctx = device_context(p.device());
  ir::Graph& g = ctx.trace().graph;
  const std::vector<ir::ValueId> out = ir::adamw_update(
      g, ctx.value_of(p), ctx.value_of(grad), ctx.value_of(m), ctx.value_of(v), ctx.value_of(lr),
      ctx.value_of(bias1), ctx.value_of(bias2), beta1, beta2, eps, weight_decay);
  return {ctx.wrap(out[0], false), ctx.wrap(out[1], false), ctx.wrap(out[2], false)};
}

}  // namespace solo
