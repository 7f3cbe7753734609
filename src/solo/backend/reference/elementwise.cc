// Naive elementwise kernels: one loop per op, every broadcast read through broadcast_offset.
#include <cmath>
#include <cstring>
#include <limits>

#include "solo/backend/kernel_util.h"
#include "solo/backend/reference/reference_backend.h"

namespace solo {
namespace {

using kernels::broadcast_offset;
using kernels::broadcast_strides;
using kernels::dispatch_float;

// Calls f(T{}) for the dtypes that arithmetic supports: f32, f64, i32, i64.
template <class F>
void dispatch_arith(OpKind op, DType dt, F&& f) {
  switch (dt) {
    case DType::I32:
      f(int32_t{});
      return;
    case DType::I64:
      f(int64_t{});
      return;
    default:
      dispatch_float(op, dt, f);
  }
}

void full(const KernelCall& c) {
  const TensorRef& y = c.out[0];
  const double v = c.attrs.f("value");
  auto fill = [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i) y.as<T>()[i] = static_cast<T>(v);
  };
  switch (y.dtype) {
    case DType::F32:
      fill(float{});
      break;
    case DType::F64:
      fill(double{});
      break;
    case DType::I32:
      fill(int32_t{});
      break;
    case DType::I64:
      fill(int64_t{});
      break;
    case DType::Bool:
      for (int64_t i = 0; i < y.numel(); ++i) y.as<uint8_t>()[i] = v != 0.0;
      break;
    case DType::BF16:
      for (int64_t i = 0; i < y.numel(); ++i) y.as<bf16>()[i] = f32_to_bf16(static_cast<float>(v));
      break;
    case DType::F16:
      for (int64_t i = 0; i < y.numel(); ++i) y.as<f16>()[i] = f32_to_f16(static_cast<float>(v));
      break;
  }
}

// y[i] = op(a[bcast(i)], b[bcast(i)])
template <class Op>
void binary(const KernelCall& c, Op op) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const auto sa = broadcast_strides(a.shape, y.shape), sb = broadcast_strides(b.shape, y.shape);
  dispatch_arith(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i)
      y.as<T>()[i] = static_cast<T>(op(a.as<T>()[broadcast_offset(i, y.shape, sa)],
                                       b.as<T>()[broadcast_offset(i, y.shape, sb)]));
  });
}

void add(const KernelCall& c) {
  binary(c, [](auto a, auto b) { return a + b; });
}
void sub(const KernelCall& c) {
  binary(c, [](auto a, auto b) { return a - b; });
}
void mul(const KernelCall& c) {
  binary(c, [](auto a, auto b) { return a * b; });
}
// y[i] = a[bcast(i)] < b[bcast(i)] as Bool.
void less(const KernelCall& c) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const auto sa = kernels::broadcast_strides(a.shape, y.shape);
  const auto sb = kernels::broadcast_strides(b.shape, y.shape);
  auto* out = y.as<uint8_t>();
  auto compare = [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i)
      out[i] = a.as<T>()[kernels::broadcast_offset(i, y.shape, sa)] <
               b.as<T>()[kernels::broadcast_offset(i, y.shape, sb)];
  };
  switch (a.dtype) {
    case DType::I32:
      compare(int32_t{});
      break;
    case DType::I64:
      compare(int64_t{});
      break;
    default:
      kernels::dispatch_float(c.op, a.dtype, compare);
  }
}

void maximum(const KernelCall& c) {
  binary(c, [](auto a, auto b) { return a < b ? b : a; });
}
void minimum(const KernelCall& c) {
  binary(c, [](auto a, auto b) { return b < a ? b : a; });
}
void div(const KernelCall& c) {
  dispatch_float(c.op, c.out[0].dtype, [](auto) {});  // integer division is not defined here
  binary(c, [](auto a, auto b) { return a / b; });
}

// y[i] = cond[bcast(i)] ? a[bcast(i)] : b[bcast(i)], elements copied as raw bytes.
void where(const KernelCall& c) {
  const TensorRef &cond = c.in[0], &a = c.in[1], &b = c.in[2], &y = c.out[0];
  const auto sc = broadcast_strides(cond.shape, y.shape);
  const auto sa = broadcast_strides(a.shape, y.shape), sb = broadcast_strides(b.shape, y.shape);
  const size_t size = dtype_size(y.dtype);
  for (int64_t i = 0; i < y.numel(); ++i) {
    const bool pick_a = kernels::read_truth(cond, broadcast_offset(i, y.shape, sc));
    const TensorRef& src = pick_a ? a : b;
    const int64_t off = broadcast_offset(i, y.shape, pick_a ? sa : sb);
    std::memcpy(static_cast<char*>(y.data) + static_cast<size_t>(i) * size,
                static_cast<const char*>(src.data) + static_cast<size_t>(off) * size, size);
  }
}

// y[i] = op(x[i]) for f32/f64 (and i32/i64 when `ints`).
template <bool ints, class Op>
void unary(const KernelCall& c, Op op) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  auto loop = [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i) y.as<T>()[i] = static_cast<T>(op(x.as<T>()[i]));
  };
  if constexpr (ints)
    dispatch_arith(c.op, y.dtype, loop);
  else
    dispatch_float(c.op, y.dtype, loop);
}

void add_scalar(const KernelCall& c) {
  const double s = c.attrs.f("value");
  unary<true>(c, [s](auto x) { return x + static_cast<decltype(x)>(s); });
}
void mul_scalar(const KernelCall& c) {
  const double s = c.attrs.f("value");
  unary<true>(c, [s](auto x) { return x * static_cast<decltype(x)>(s); });
}
void pow_scalar(const KernelCall& c) {
  const double p = c.attrs.f("value");
  unary<false>(c, [p](auto x) { return std::pow(x, static_cast<decltype(x)>(p)); });
}
void neg(const KernelCall& c) {
  unary<true>(c, [](auto x) { return -x; });
}
void exp(const KernelCall& c) {
  unary<false>(c, [](auto x) { return std::exp(x); });
}
void log(const KernelCall& c) {
  unary<false>(c, [](auto x) { return std::log(x); });
}
void sqrt(const KernelCall& c) {
  unary<false>(c, [](auto x) { return std::sqrt(x); });
}
void rsqrt(const KernelCall& c) {
  unary<false>(c, [](auto x) { return decltype(x)(1) / std::sqrt(x); });
}

// silu(x) = x * sigmoid(x)
void silu(const KernelCall& c) {
  unary<false>(c, [](auto x) { return x / (decltype(x)(1) + std::exp(-x)); });
}

// Exact: x Phi(x) with Phi the normal CDF. Tanh (GPT-2): x/2 (1 + tanh(k (x + 0.044715 x^3))).
template <class T>
T gelu_value(T x, bool tanh_approx) {
  if (tanh_approx) {
    const T k = static_cast<T>(0.7978845608028654);  // sqrt(2 / pi)
    return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
  }
  return T(0.5) * x * (T(1) + std::erf(x * static_cast<T>(0.7071067811865476)));
}

// d gelu / dx. Exact: Phi(x) + x phi(x). Tanh: with u = k (x + c x^3), t = tanh(u),
// 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2).
template <class T>
T gelu_slope(T x, bool tanh_approx) {
  if (tanh_approx) {
    const T k = static_cast<T>(0.7978845608028654), c = static_cast<T>(0.044715);
    const T t = std::tanh(k * (x + c * x * x * x));
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k * (T(1) + T(3) * c * x * x);
  }
  const T cdf = T(0.5) * (T(1) + std::erf(x * static_cast<T>(0.7071067811865476)));
  const T pdf = std::exp(T(-0.5) * x * x) * static_cast<T>(0.3989422804014327);  // 1/sqrt(2 pi)
  return cdf + x * pdf;
}

void gelu(const KernelCall& c) {
  const bool t = c.attrs.i("tanh") != 0;
  unary<false>(c, [t](auto x) { return gelu_value(x, t); });
}

// dx = dy * f'(x) for x, dy of the same shape.
template <class Slope>
void activation_backward(const KernelCall& c, Slope slope) {
  const TensorRef &x = c.in[0], &dy = c.in[1], &dx = c.out[0];
  dispatch_float(c.op, dx.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < dx.numel(); ++i) dx.as<T>()[i] = dy.as<T>()[i] * slope(x.as<T>()[i]);
  });
}

// silu'(x) = s (1 + x (1 - s)), s = sigmoid(x)
void silu_backward(const KernelCall& c) {
  activation_backward(c, [](auto x) {
    using T = decltype(x);
    const T s = T(1) / (T(1) + std::exp(-x));
    return s * (T(1) + x * (T(1) - s));
  });
}

void gelu_backward(const KernelCall& c) {
  const bool t = c.attrs.i("tanh") != 0;
  activation_backward(c, [t](auto x) { return gelu_slope(x, t); });
}

// gate, up [*] -> y = silu(gate) * up
void swiglu(const KernelCall& c) {
  const TensorRef &gate = c.in[0], &up = c.in[1], &y = c.out[0];
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i) {
      const T g = gate.as<T>()[i];
      y.as<T>()[i] = g / (T(1) + std::exp(-g)) * up.as<T>()[i];
    }
  });
}

// gate, up, dy [*] -> dgate = dy up silu'(gate), dup = dy silu(gate)
void swiglu_backward(const KernelCall& c) {
  const TensorRef &gate = c.in[0], &up = c.in[1], &dy = c.in[2];
  const TensorRef &dgate = c.out[0], &dup = c.out[1];
  dispatch_float(c.op, dgate.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < dgate.numel(); ++i) {
      const T g = gate.as<T>()[i], s = T(1) / (T(1) + std::exp(-g)), d = dy.as<T>()[i];
      dup.as<T>()[i] = d * g * s;
      dgate.as<T>()[i] = d * up.as<T>()[i] * s * (T(1) + g * (T(1) - s));
    }
  });
}

// Float to integer truncates toward zero (as PyTorch); NaN gives 0 and out-of-range values
// saturate, where C++ would be undefined.
template <class I>
I truncate_to_int(double v) {
  if (std::isnan(v)) return 0;
  if (v >= -static_cast<double>(std::numeric_limits<I>::min()))
    return std::numeric_limits<I>::max();
  if (v <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  return static_cast<I>(v);
}

// An element read from any dtype: integers stay exact as int64, floats widen to double.
struct Scalar {
  bool integral;
  int64_t i;
  double f;
};

Scalar read_scalar(const TensorRef& t, int64_t k) {
  switch (t.dtype) {
    case DType::F32:
      return {false, 0, t.as<float>()[k]};
    case DType::F64:
      return {false, 0, t.as<double>()[k]};
    case DType::BF16:
      return {false, 0, bf16_to_f32(t.as<bf16>()[k])};
    case DType::F16:
      return {false, 0, f16_to_f32(t.as<f16>()[k])};
    default:
      return {true, kernels::read_index(t, k), 0.0};
  }
}

// Writes v converted to t's dtype. Half types round from f32 (as PyTorch does for f64).
void write_scalar(const TensorRef& t, int64_t k, Scalar v) {
  const float f32 = v.integral ? static_cast<float>(v.i) : static_cast<float>(v.f);
  switch (t.dtype) {
    case DType::F32:
      t.as<float>()[k] = f32;
      break;
    case DType::F64:
      t.as<double>()[k] = v.integral ? static_cast<double>(v.i) : v.f;
      break;
    case DType::BF16:
      t.as<bf16>()[k] = f32_to_bf16(f32);
      break;
    case DType::F16:
      t.as<f16>()[k] = f32_to_f16(f32);
      break;
    case DType::I32:  // integer narrowing wraps (two's complement), as in PyTorch
      t.as<int32_t>()[k] = v.integral ? static_cast<int32_t>(v.i) : truncate_to_int<int32_t>(v.f);
      break;
    case DType::I64:
      t.as<int64_t>()[k] = v.integral ? v.i : truncate_to_int<int64_t>(v.f);
      break;
    case DType::Bool:
      t.as<uint8_t>()[k] = v.integral ? v.i != 0 : v.f != 0.0;
      break;
  }
}

void cast(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  for (int64_t i = 0; i < y.numel(); ++i) write_scalar(y, i, read_scalar(x, i));
}

// y = x summed over attrs "axes": each input element adds into the output element that its
// index maps to once the reduced axes are dropped. Mean divides by the reduced count.
void reduce(const KernelCall& c, bool mean) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const auto& axes = c.attrs.ints("axes");
  std::vector<int64_t> kept = x.shape.dims();
  int64_t count = 1;
  for (int64_t a : axes) {
    count *= kept[static_cast<size_t>(a)];
    kept[static_cast<size_t>(a)] = 1;
  }
  const auto strides = broadcast_strides(Shape(kept), x.shape);
  auto loop = [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i) y.as<T>()[i] = T(0);
    for (int64_t i = 0; i < x.numel(); ++i)
      y.as<T>()[broadcast_offset(i, x.shape, strides)] += x.as<T>()[i];
    if (mean)
      for (int64_t i = 0; i < y.numel(); ++i) y.as<T>()[i] /= static_cast<T>(count);
  };
  if (mean)
    dispatch_float(c.op, y.dtype, loop);
  else
    dispatch_arith(c.op, y.dtype, loop);
}

void sum(const KernelCall& c) {
  reduce(c, false);
}
void mean(const KernelCall& c) {
  reduce(c, true);
}

// Pure data movement, so any dtype: elements are copied as raw bytes.
void broadcast_to(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const auto sx = broadcast_strides(x.shape, y.shape);
  const size_t size = dtype_size(y.dtype);
  for (int64_t i = 0; i < y.numel(); ++i)
    std::memcpy(static_cast<char*>(y.data) + static_cast<size_t>(i) * size,
                static_cast<const char*>(x.data) +
                    static_cast<size_t>(broadcast_offset(i, y.shape, sx)) * size,
                size);
}

}  // namespace

void register_reference_elementwise_kernels(KernelTable& t) {
  t.set(OpKind::Full, full);
  t.set(OpKind::Add, add);
  t.set(OpKind::Sub, sub);
  t.set(OpKind::Maximum, maximum);
  t.set(OpKind::Minimum, minimum);
  t.set(OpKind::Less, less);
  t.set(OpKind::Mul, mul);
  t.set(OpKind::Div, div);
  t.set(OpKind::Where, where);
  t.set(OpKind::AddScalar, add_scalar);
  t.set(OpKind::MulScalar, mul_scalar);
  t.set(OpKind::PowScalar, pow_scalar);
  t.set(OpKind::Neg, neg);
  t.set(OpKind::Exp, exp);
  t.set(OpKind::Log, log);
  t.set(OpKind::Sqrt, sqrt);
  t.set(OpKind::Rsqrt, rsqrt);
  t.set(OpKind::Silu, silu);
  t.set(OpKind::Gelu, gelu);
  t.set(OpKind::SiluBackward, silu_backward);
  t.set(OpKind::GeluBackward, gelu_backward);
  t.set(OpKind::Swiglu, swiglu);
  t.set(OpKind::SwigluBackward, swiglu_backward);
  t.set(OpKind::Cast, cast);
  t.set(OpKind::Sum, sum);
  t.set(OpKind::Mean, mean);
  t.set(OpKind::BroadcastTo, broadcast_to);
}

}  // namespace solo
