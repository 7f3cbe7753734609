// Tensor ops: each resolves its operands to values of the device's pending graph and calls
// the graph builder of the same name (ir/ops.h).
#include "solo/core/error.h"
#include "solo/ir/ops.h"
#include "solo/tensor/tensor_impl.h"

namespace solo {

namespace {

// Builds one op on the device of the first defined operand with build(trace, values).
// Undefined operands (optional ones such as a bias) map to kNoValue.
template <class F>
Tensor lazy_in_trace(std::initializer_list<const Tensor*> operands, F&& build) {
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
  const ir::ValueId out = build(ctx.trace(), v);
  return ctx.wrap(out, requires_grad && ir::grad_enabled());
}

// The same with build(graph, values), for ops that need nothing else of the trace.
template <class F>
Tensor lazy(std::initializer_list<const Tensor*> operands, F&& build) {
  return lazy_in_trace(
      operands, [&](Trace& t, const std::vector<ir::ValueId>& v) { return build(t.graph, v); });
}

// Float operands of different dtypes meet at the wider one, as in PyTorch (f64 > f32 > the
// halves; bf16 with f16 gives f32): under autocast, a bf16 branch added to the f32 residual
// stream gives f32.
DType promoted(DType a, DType b) {
  if (a == b || !is_floating(a) || !is_floating(b)) return a;
  if (a == DType::F64 || b == DType::F64) return DType::F64;
  return DType::F32;
}
ir::ValueId promote_to(ir::Graph& g, ir::ValueId v, DType dt) {
  return v == ir::kNoValue || g.dtype(v) == dt || !is_floating(g.dtype(v)) ? v : ir::cast(g, v, dt);
}

thread_local DType t_autocast = DType::F32;

// Under autocast, an f32 operand of a matmul-like op is computed in the autocast dtype, and
// the result stays in it (PyTorch's autocast): the activations between matmuls are half the
// bytes. Each value is cast once per trace, however many matmuls read it (x feeds q, k and
// v; a weight's cast serves forward and backward).
ir::ValueId autocast_in(Trace& t, ir::ValueId v) {
  if (t_autocast == DType::F32 || v == ir::kNoValue || t.graph.dtype(v) != DType::F32) return v;
  const uint64_t key = static_cast<uint64_t>(v) << 8 | static_cast<uint64_t>(t_autocast);
  auto it = t.autocast_casts.find(key);
  if (it != t.autocast_casts.end()) return it->second;
  const ir::ValueId c = ir::cast(t.graph, v, t_autocast);
  t.autocast_casts.emplace(key, c);
  return c;
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

#define SOLO_BINARY(fn, irfn)                                               \
  Tensor fn(const Tensor& a, const Tensor& b) {                             \
    return lazy({&a, &b}, [](ir::Graph& g, const auto& v) {                 \
      const DType dt = promoted(g.dtype(v[0]), g.dtype(v[1]));              \
      return ir::irfn(g, promote_to(g, v[0], dt), promote_to(g, v[1], dt)); \
    });                                                                     \
  }
SOLO_BINARY(operator+, add)
SOLO_BINARY(operator-, sub)
SOLO_BINARY(operator*, mul)
SOLO_BINARY(operator/, div)
SOLO_BINARY(maximum, maximum)
SOLO_BINARY(minimum, minimum)
SOLO_BINARY(swiglu, swiglu)
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
  return lazy({&cond, &a, &b}, [](ir::Graph& g, const auto& v) {
    const DType dt = promoted(g.dtype(v[1]), g.dtype(v[2]));
    return ir::where(g, v[0], promote_to(g, v[1], dt), promote_to(g, v[2], dt));
  });
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
  return lazy_in_trace({&a, &b}, [&](Trace& t, const auto& v) {
    return ir::matmul(t.graph, autocast_in(t, v[0]), autocast_in(t, v[1]), trans_a, trans_b);
  });
}
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  return lazy_in_trace({&x, &w, &bias}, [](Trace& t, const auto& v) {
    return ir::linear(t.graph, autocast_in(t, v[0]), autocast_in(t, v[1]), autocast_in(t, v[2]));
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

Tensor rope(const Tensor& x, const RopeScaling& scaling) {
  return lazy({&x}, [scaling](ir::Graph& g, const auto& v) { return ir::rope(g, v[0], scaling); });
}
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_mask, bool causal, int64_t window) {
  return lazy_in_trace({&q, &k, &v, &key_mask}, [causal, window](Trace& t, const auto& x) {
    return ir::scaled_dot_product_attention(t.graph, autocast_in(t, x[0]), autocast_in(t, x[1]),
                                            autocast_in(t, x[2]), x[3], causal, window);
  });
}
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  return lazy({&logits, &labels}, [ignore_index](ir::Graph& g, const auto& v) {
    // Under autocast the loss is computed in f32 from half logits, as PyTorch does.
    const ir::ValueId x = t_autocast != DType::F32 ? promote_to(g, v[0], DType::F32) : v[0];
    return ir::cross_entropy(g, x, v[1], ignore_index);
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
