// CPU elementwise, broadcast and reduction kernels. Equal shapes run one flat OpenMP loop;
// broadcasts collapse the output into as few dims as possible and run contiguous inner rows
// (the outer index is decoded once per row, never per element); reductions are matched to
// row sums ([M, R] -> [M]) and column sums ([A, R, N] -> [A, N]) before a generic fallback.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/kernel_util.h"

namespace solo {
namespace {

using kernels::broadcast_strides;
using kernels::dispatch_float;

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

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

// Calls f(U{}) with an unsigned integer type of the dtype's size: for kernels that only move
// elements (where, broadcast_to, full), which then serve every dtype.
template <class F>
void dispatch_bytes(DType dt, F&& f) {
  switch (dtype_size(dt)) {
    case 1:
      f(uint8_t{});
      return;
    case 2:
      f(uint16_t{});
      return;
    case 4:
      f(uint32_t{});
      return;
    default:
      f(uint64_t{});
      return;
  }
}

// ---- broadcast iteration -------------------------------------------------------------------

// The output dims with size-1 dims dropped and neighbours merged wherever every operand steps
// through them alike (both contiguous or both broadcast), so [B, T, C] + [C] becomes
// [B*T, C] with strides {C, 1} and {0, 1}. The innermost stride of each operand is 0 or 1.
template <size_t K>
struct BroadcastPlan {
  std::vector<int64_t> dims;
  std::array<std::vector<int64_t>, K> strides;
};

template <size_t K>
BroadcastPlan<K> plan_broadcast(const Shape& out, const std::array<const Shape*, K>& ins) {
  std::array<std::vector<int64_t>, K> full;
  for (size_t k = 0; k < K; ++k) full[k] = broadcast_strides(*ins[k], out);
  BroadcastPlan<K> p;
  for (int d = 0; d < out.rank(); ++d) {
    const auto du = static_cast<size_t>(d);
    if (out[d] == 1) continue;
    bool merge = !p.dims.empty();
    for (size_t k = 0; k < K && merge; ++k) merge = p.strides[k].back() == full[k][du] * out[d];
    if (merge) {
      p.dims.back() *= out[d];
      for (size_t k = 0; k < K; ++k) p.strides[k].back() = full[k][du];
    } else {
      p.dims.push_back(out[d]);
      for (size_t k = 0; k < K; ++k) p.strides[k].push_back(full[k][du]);
    }
  }
  if (p.dims.empty()) {  // a single element
    p.dims.push_back(1);
    for (size_t k = 0; k < K; ++k) p.strides[k].push_back(0);
  }
  return p;
}

// Calls row(off, y_off, n) for runs of n output elements along the innermost plan dim, in
// parallel: off[k] is operand k's offset of the run's first element and y_off the output's.
// Few long rows are cut into chunks so that [N] + [1] still uses every thread.
template <size_t K, class Row>
void for_each_row(const BroadcastPlan<K>& p, Row row) {
  const int r = static_cast<int>(p.dims.size());
  const int64_t inner = p.dims.back();
  int64_t rows = 1;
  for (int d = 0; d + 1 < r; ++d) rows *= p.dims[static_cast<size_t>(d)];
  const int64_t total = rows * inner;
  if (total == 0) return;
  const int64_t chunks = rows >= 64 ? 1 : std::max<int64_t>(1, std::min<int64_t>(64, inner / 4096));
  const int64_t chunk = (inner + chunks - 1) / chunks;
#pragma omp parallel for schedule(static) if (total >= kParallelGrain)
  for (int64_t task = 0; task < rows * chunks; ++task) {
    const int64_t i = task / chunks, c0 = (task % chunks) * chunk;
    const int64_t n = std::min(chunk, inner - c0);
    std::array<int64_t, K> off{};
    int64_t rem = i;
    for (int d = r - 2; d >= 0; --d) {  // decode the row index once per row
      const auto du = static_cast<size_t>(d);
      const int64_t q = rem % p.dims[du];
      rem /= p.dims[du];
      for (size_t k = 0; k < K; ++k) off[k] += q * p.strides[k][du];
    }
    for (size_t k = 0; k < K; ++k) off[k] += c0 * p.strides[k].back();
    if (n > 0) row(off, i * inner + c0, n);
  }
}

// ---- full ------------------------------------------------------------------------------

// y [*] = value, written as the dtype's bit pattern so one fill loop serves every dtype.
void full(const KernelCall& c) {
  const TensorRef& y = c.out[0];
  const double v = c.attrs.f("value");
  uint64_t bits = 0;
  switch (y.dtype) {
    case DType::F32: {
      const float f = static_cast<float>(v);
      std::memcpy(&bits, &f, 4);
      break;
    }
    case DType::F64:
      std::memcpy(&bits, &v, 8);
      break;
    case DType::BF16:
      bits = f32_to_bf16(static_cast<float>(v)).bits;
      break;
    case DType::F16:
      bits = f32_to_f16(static_cast<float>(v)).bits;
      break;
    case DType::I32: {
      const auto i = static_cast<int32_t>(v);
      std::memcpy(&bits, &i, 4);
      break;
    }
    case DType::I64: {
      const auto i = static_cast<int64_t>(v);
      std::memcpy(&bits, &i, 8);
      break;
    }
    case DType::Bool:
      bits = v != 0.0;
      break;
  }
  dispatch_bytes(y.dtype, [&](auto zero) {
    using U = decltype(zero);
    U pattern;
    std::memcpy(&pattern, &bits, sizeof(U));  // little-endian: the low bytes hold the value
    U* out = y.as<U>();
    const int64_t n = y.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = pattern;
  });
}

// ---- binary ------------------------------------------------------------------------------

// y = op(a, b) with NumPy broadcasting. a, b, y: same dtype.
template <class Op>
void binary(const KernelCall& c, Op op) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  dispatch_arith(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pa = a.as<T>(), *pb = b.as<T>();
    T* py = y.as<T>();
    const int64_t n = y.numel();
    if (a.numel() == n && b.numel() == n) {  // no broadcast: one flat loop
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
      for (int64_t i = 0; i < n; ++i) py[i] = static_cast<T>(op(pa[i], pb[i]));
      return;
    }
    const auto plan = plan_broadcast<2>(y.shape, {&a.shape, &b.shape});
    const int64_t sa = plan.strides[0].back(), sb = plan.strides[1].back();
    for_each_row(plan, [&](const std::array<int64_t, 2>& off, int64_t yo, int64_t m) {
      const T *ra = pa + off[0], *rb = pb + off[1];
      T* ry = py + yo;
      // Inner strides are 0 or 1: specialise so each loop is a plain vectorisable one.
      if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < m; ++i) ry[i] = static_cast<T>(op(ra[i], rb[i]));
      } else if (sa == 1) {
        const T vb = *rb;
        for (int64_t i = 0; i < m; ++i) ry[i] = static_cast<T>(op(ra[i], vb));
      } else if (sb == 1) {
        const T va = *ra;
        for (int64_t i = 0; i < m; ++i) ry[i] = static_cast<T>(op(va, rb[i]));
      } else {
        const T v = static_cast<T>(op(*ra, *rb));
        for (int64_t i = 0; i < m; ++i) ry[i] = v;
      }
    });
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

// ---- where -------------------------------------------------------------------------------

// Truth of a condition element: nonzero. Half types test their bits (NaN counts as true).
template <class C>
inline bool truth(C v) {
  return v != C(0);
}
inline bool truth(bf16 v) {
  return (v.bits & 0x7fffu) != 0;
}
inline bool truth(f16 v) {
  return (v.bits & 0x7fffu) != 0;
}

template <class F>
void dispatch_cond(DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::F64:
      f(double{});
      return;
    case DType::BF16:
      f(bf16{});
      return;
    case DType::F16:
      f(f16{});
      return;
    case DType::I32:
      f(int32_t{});
      return;
    case DType::I64:
      f(int64_t{});
      return;
    case DType::Bool:
      f(uint8_t{});
      return;
  }
}

// cond, a, b broadcast to y: y = cond ? a : b. Elements of a and b are moved as raw bits.
void where(const KernelCall& c) {
  const TensorRef &cond = c.in[0], &a = c.in[1], &b = c.in[2], &y = c.out[0];
  const auto plan = plan_broadcast<3>(y.shape, {&cond.shape, &a.shape, &b.shape});
  const int64_t sc = plan.strides[0].back(), sa = plan.strides[1].back(),
                sb = plan.strides[2].back();
  dispatch_cond(cond.dtype, [&](auto czero) {
    using C = decltype(czero);
    dispatch_bytes(y.dtype, [&](auto zero) {
      using U = decltype(zero);
      const C* pc = cond.as<C>();
      const U *pa = a.as<U>(), *pb = b.as<U>();
      U* py = y.as<U>();
      for_each_row(plan, [&](const std::array<int64_t, 3>& off, int64_t yo, int64_t m) {
        const C* rc = pc + off[0];
        const U *ra = pa + off[1], *rb = pb + off[2];
        U* ry = py + yo;
        if (sc == 1 && sa == 1 && sb == 1) {  // the common unbroadcast case
          for (int64_t i = 0; i < m; ++i) ry[i] = truth(rc[i]) ? ra[i] : rb[i];
        } else {
          for (int64_t i = 0; i < m; ++i) ry[i] = truth(rc[i * sc]) ? ra[i * sa] : rb[i * sb];
        }
      });
    });
  });
}

// ---- unary -------------------------------------------------------------------------------

// y [*] = op(x [*]), one flat loop; f32/f64 (and i32/i64 when `ints`).
template <bool ints, class Op>
void unary(const KernelCall& c, Op op) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  auto loop = [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.as<T>();
    T* py = y.as<T>();
    const int64_t n = y.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) py[i] = static_cast<T>(op(px[i]));
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
// Common exponents avoid the slow general pow.
void pow_scalar(const KernelCall& c) {
  const double p = c.attrs.f("value");
  if (p == 1.0)
    unary<false>(c, [](auto x) { return x; });
  else if (p == 2.0)
    unary<false>(c, [](auto x) { return x * x; });
  else if (p == 3.0)
    unary<false>(c, [](auto x) { return x * x * x; });
  else if (p == 0.5)
    unary<false>(c, [](auto x) { return std::sqrt(x); });
  else if (p == -1.0)
    unary<false>(c, [](auto x) { return decltype(x)(1) / x; });
  else
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

// silu(x) = x sigmoid(x) = x / (1 + e^-x)
void silu(const KernelCall& c) {
  unary<false>(c, [](auto x) { return x / (decltype(x)(1) + std::exp(-x)); });
}

constexpr double kSqrt2OverPi = 0.7978845608028654, kGeluC = 0.044715;
constexpr double kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;

void gelu(const KernelCall& c) {
  if (c.attrs.i("tanh") != 0) {  // GPT-2: x/2 (1 + tanh(k (x + 0.044715 x^3)))
    unary<false>(c, [](auto x) {
      using T = decltype(x);
      const T u = T(kSqrt2OverPi) * (x + T(kGeluC) * x * x * x);
      return T(0.5) * x * (T(1) + std::tanh(u));
    });
  } else {  // exact: x Phi(x)
    unary<false>(c, [](auto x) {
      using T = decltype(x);
      return T(0.5) * x * (T(1) + std::erf(x * T(kInvSqrt2)));
    });
  }
}

// x [*], dy [*] -> dx = dy * f'(x) [*]
template <class Slope>
void activation_backward(const KernelCall& c, Slope slope) {
  const TensorRef &x = c.in[0], &dy = c.in[1], &dx = c.out[0];
  dispatch_float(c.op, dx.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *px = x.as<T>(), *pdy = dy.as<T>();
    T* pdx = dx.as<T>();
    const int64_t n = dx.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) pdx[i] = pdy[i] * slope(px[i]);
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
  if (c.attrs.i("tanh") != 0) {
    // u = k (x + c x^3), t = tanh u: 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)
    activation_backward(c, [](auto x) {
      using T = decltype(x);
      const T x2 = x * x;
      const T t = std::tanh(T(kSqrt2OverPi) * x * (T(1) + T(kGeluC) * x2));
      return T(0.5) * (T(1) + t) +
             T(0.5) * x * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * kGeluC) * x2);
    });
  } else {  // Phi(x) + x phi(x)
    activation_backward(c, [](auto x) {
      using T = decltype(x);
      const T cdf = T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2)));
      return cdf + x * std::exp(T(-0.5) * x * x) * T(kInvSqrt2Pi);
    });
  }
}

// gate, up [n] -> y [n] = silu(gate) * up: one pass instead of silu then mul.
void swiglu(const KernelCall& c) {
  const TensorRef &gate = c.in[0], &up = c.in[1], &y = c.out[0];
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pg = gate.as<T>(), *pu = up.as<T>();
    T* py = y.as<T>();
    const int64_t n = y.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) py[i] = pg[i] / (T(1) + std::exp(-pg[i])) * pu[i];
  });
}

// gate, up, dy [n] -> dgate = dy up silu'(gate), dup = dy silu(gate) [n], one pass;
// silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
void swiglu_backward(const KernelCall& c) {
  const TensorRef &gate = c.in[0], &up = c.in[1], &dy = c.in[2];
  const TensorRef &dgate = c.out[0], &dup = c.out[1];
  dispatch_float(c.op, dgate.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pg = gate.as<T>(), *pu = up.as<T>(), *pdy = dy.as<T>();
    T *pdg = dgate.as<T>(), *pdu = dup.as<T>();
    const int64_t n = dgate.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const T g = pg[i], s = T(1) / (T(1) + std::exp(-g)), d = pdy[i];
      pdu[i] = d * g * s;
      pdg[i] = d * pu[i] * s * (T(1) + g * (T(1) - s));
    }
  });
}

// ---- cast --------------------------------------------------------------------------------

// Float to integer truncates toward zero (as PyTorch); NaN gives 0 and out-of-range values
// saturate, where C++ would be undefined.
template <class I>
inline I truncate_to_int(double v) {
  if (std::isnan(v)) return 0;
  if (v >= -static_cast<double>(std::numeric_limits<I>::min()))
    return std::numeric_limits<I>::max();
  if (v <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  return static_cast<I>(v);
}

// Storage type of each dtype, as a tag carrying the dtype (bool and uint8 must differ).
template <DType D>
struct Tag {
  static constexpr DType dtype = D;
  using type = std::conditional_t<
      D == DType::F32, float,
      std::conditional_t<
          D == DType::F64, double,
          std::conditional_t<
              D == DType::BF16, bf16,
              std::conditional_t<
                  D == DType::F16, f16,
                  std::conditional_t<D == DType::I32, int32_t,
                                     std::conditional_t<D == DType::I64, int64_t, uint8_t>>>>>>;
};

template <class F>
void dispatch_tag(DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      f(Tag<DType::F32>{});
      return;
    case DType::F64:
      f(Tag<DType::F64>{});
      return;
    case DType::BF16:
      f(Tag<DType::BF16>{});
      return;
    case DType::F16:
      f(Tag<DType::F16>{});
      return;
    case DType::I32:
      f(Tag<DType::I32>{});
      return;
    case DType::I64:
      f(Tag<DType::I64>{});
      return;
    case DType::Bool:
      f(Tag<DType::Bool>{});
      return;
  }
}

// Widens an element: half types to float, integers (and bool) to int64, floats unchanged.
template <DType D>
inline auto load(typename Tag<D>::type v) {
  if constexpr (D == DType::BF16)
    return bf16_to_f32(v);
  else if constexpr (D == DType::F16)
    return f16_to_f32(v);
  else if constexpr (D == DType::I32 || D == DType::I64 || D == DType::Bool)
    return static_cast<int64_t>(v);
  else
    return v;
}

// Narrows a widened element to dtype D. Half types round from f32, as PyTorch does.
template <DType D, class W>
inline typename Tag<D>::type store(W w) {
  constexpr bool from_int = std::is_integral_v<W>;
  if constexpr (D == DType::F32)
    return static_cast<float>(w);
  else if constexpr (D == DType::F64)
    return static_cast<double>(w);
  else if constexpr (D == DType::BF16)
    return f32_to_bf16(static_cast<float>(w));
  else if constexpr (D == DType::F16)
    return f32_to_f16(static_cast<float>(w));
  else if constexpr (D == DType::Bool)
    return static_cast<uint8_t>(w != W(0));
  else if constexpr (from_int)
    return static_cast<typename Tag<D>::type>(w);  // wraps
  else
    return truncate_to_int<typename Tag<D>::type>(static_cast<double>(w));
}

// x [*] -> y [*] in y's dtype: one flat loop per (from, to) pair.
void cast(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  dispatch_tag(x.dtype, [&](auto from) {
    dispatch_tag(y.dtype, [&](auto to) {
      constexpr DType F = decltype(from)::dtype, D = decltype(to)::dtype;
      const auto* px = x.as<typename Tag<F>::type>();
      auto* py = y.as<typename Tag<D>::type>();
      const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
      for (int64_t i = 0; i < n; ++i) py[i] = store<D>(load<F>(px[i]));
    });
  });
}

// ---- reductions --------------------------------------------------------------------------

// y[m] = sum_r x[m, r]: x [M, R] -> y [M]
template <class T>
void row_sums(const T* x, T* y, int64_t M, int64_t R) {
  if (M >= omp_get_max_threads() || M * R < kParallelGrain) {  // one row per thread
#pragma omp parallel for schedule(static) if (M * R >= kParallelGrain)
    for (int64_t m = 0; m < M; ++m) {
      const T* row = x + m * R;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t r = 0; r < R; ++r) acc += row[r];
      y[m] = acc;
    }
    return;
  }
  for (int64_t m = 0; m < M; ++m) {  // few long rows: all threads share each row
    const T* row = x + m * R;
    T acc = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : acc)
    for (int64_t r = 0; r < R; ++r) acc += row[r];
    y[m] = acc;
  }
}

// y[a, n] = sum_r x[a, r, n]: x [A, R, N] -> y [A, N] (leading-axes sums, e.g. bias grads)
template <class T>
void column_sums(const T* x, T* y, int64_t A, int64_t R, int64_t N) {
  constexpr int64_t kBlock = 256;  // columns per task: a few vectors, reused across rows
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  const int threads = omp_get_max_threads();
  const bool parallel = A * R * N >= kParallelGrain;
  if (!parallel || A * blocks >= 4 * threads) {
    // Enough independent column blocks: each task sweeps all R rows of its block.
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t task = 0; task < A * blocks; ++task) {
      const int64_t a = task / blocks, n0 = (task % blocks) * kBlock;
      const int64_t nb = std::min(kBlock, N - n0);
      T* out = y + a * N + n0;
      const T* in = x + a * R * N + n0;
      for (int64_t n = 0; n < nb; ++n) out[n] = 0;
      for (int64_t r = 0; r < R; ++r) {
        const T* row = in + r * N;
#pragma omp simd
        for (int64_t n = 0; n < nb; ++n) out[n] += row[n];
      }
    }
    return;
  }
  // Few columns, many rows ([B*T, C] bias grads): each thread sums a slice of the rows into
  // its own partial [A, N], then the partials are added in thread order (deterministic).
  std::vector<T> partial(static_cast<size_t>(threads * A * N), T(0));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    T* acc = partial.data() + static_cast<int64_t>(t) * A * N;
    const int64_t r0 = R * t / nt, r1 = R * (t + 1) / nt;
    for (int64_t a = 0; a < A; ++a)
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = x + (a * R + r) * N;
        T* out = acc + a * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) out[n] += row[n];
      }
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < A * N; ++i) {
    T s = 0;
    for (int t = 0; t < threads; ++t) s += partial[static_cast<size_t>(t * A * N + i)];
    y[i] = s;
  }
}

// Any other pattern of reduced axes: each output element gathers its inputs through a
// table of the reduced elements' offsets.
template <class T>
void gather_sums(const T* x, T* y, const std::vector<int64_t>& dims,
                 const std::vector<bool>& reduced) {
  const Shape shape(dims);
  const auto strides = shape.strides();
  std::vector<int64_t> kept_dims, kept_strides, roffsets{0};
  for (size_t d = 0; d < dims.size(); ++d) {
    if (!reduced[d]) {
      kept_dims.push_back(dims[d]);
      kept_strides.push_back(strides[d]);
      continue;
    }
    std::vector<int64_t> next;  // offsets of the reduced sub-space, row-major
    for (int64_t o : roffsets)
      for (int64_t i = 0; i < dims[d]; ++i) next.push_back(o + i * strides[d]);
    roffsets = std::move(next);
  }
  int64_t out_n = 1;
  for (int64_t d : kept_dims) out_n *= d;
  const auto R = static_cast<int64_t>(roffsets.size());
#pragma omp parallel for schedule(static) if (out_n * R >= kParallelGrain)
  for (int64_t o = 0; o < out_n; ++o) {
    int64_t base = 0, rem = o;
    for (size_t d = kept_dims.size(); d-- > 0;) {
      base += (rem % kept_dims[d]) * kept_strides[d];
      rem /= kept_dims[d];
    }
    T acc = 0;
    for (int64_t r = 0; r < R; ++r) acc += x[base + roffsets[static_cast<size_t>(r)]];
    y[o] = acc;
  }
}

// Sum / mean of x over attrs "axes". The dims are first merged into alternating groups of
// kept and reduced axes (size-1 dims dropped), then matched to a fast pattern.
void reduce(const KernelCall& c, bool mean) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const auto& axes = c.attrs.ints("axes");
  std::vector<bool> is_reduced(static_cast<size_t>(x.shape.rank()), false);
  int64_t count = 1;
  for (int64_t a : axes) {
    is_reduced[static_cast<size_t>(a)] = true;
    count *= x.shape[static_cast<int>(a)];
  }
  std::vector<int64_t> dims;
  std::vector<bool> red;
  for (int d = 0; d < x.shape.rank(); ++d) {
    if (x.shape[d] == 1) continue;
    const bool r = is_reduced[static_cast<size_t>(d)];
    if (!dims.empty() && red.back() == r) {
      dims.back() *= x.shape[d];
    } else {
      dims.push_back(x.shape[d]);
      red.push_back(r);
    }
  }
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.as<T>();
    T* py = y.as<T>();
    const int64_t out_n = y.numel();
    if (x.numel() == 0) {
      for (int64_t i = 0; i < out_n; ++i) py[i] = T(0);
    } else if (dims.empty()) {  // a single element
      py[0] = px[0];
    } else if (dims.size() == 1 && !red[0]) {  // nothing of size > 1 reduced: a copy
      std::memcpy(py, px, static_cast<size_t>(out_n) * sizeof(T));
    } else if (dims.size() == 1) {  // everything: [R] -> []
      row_sums(px, py, 1, dims[0]);
    } else if (dims.size() == 2 && !red[0]) {  // trailing axes: [M, R] -> [M]
      row_sums(px, py, dims[0], dims[1]);
    } else if (dims.size() == 2) {  // leading axes: [R, N] -> [N]
      column_sums(px, py, 1, dims[0], dims[1]);
    } else if (dims.size() == 3 && !red[0]) {  // middle axes: [A, R, N] -> [A, N]
      column_sums(px, py, dims[0], dims[1], dims[2]);
    } else {
      gather_sums(px, py, dims, red);
    }
    if (mean) {
      const auto n = static_cast<T>(count);  // 0 elements: 0 / 0 = NaN, as PyTorch
#pragma omp parallel for simd schedule(static) if (out_n >= kParallelGrain)
      for (int64_t i = 0; i < out_n; ++i) py[i] /= n;
    }
  };
  if (mean)
    dispatch_float(c.op, y.dtype, run);
  else
    dispatch_arith(c.op, y.dtype, run);
}

void sum(const KernelCall& c) {
  reduce(c, false);
}
void mean(const KernelCall& c) {
  reduce(c, true);
}

// ---- broadcast_to ------------------------------------------------------------------------

// x -> y [shape]: contiguous runs are copied, broadcast runs filled; any dtype.
void broadcast_to(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const auto plan = plan_broadcast<1>(y.shape, {&x.shape});
  const int64_t sx = plan.strides[0].back();
  dispatch_bytes(y.dtype, [&](auto zero) {
    using U = decltype(zero);
    const U* px = x.as<U>();
    U* py = y.as<U>();
    for_each_row(plan, [&](const std::array<int64_t, 1>& off, int64_t yo, int64_t m) {
      if (sx == 1) {
        std::memcpy(py + yo, px + off[0], static_cast<size_t>(m) * sizeof(U));
      } else {
        const U v = px[off[0]];
        for (int64_t i = 0; i < m; ++i) py[yo + i] = v;
      }
    });
  });
}

}  // namespace

void register_cpu_elementwise_kernels(KernelTable& t) {
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
  t.set(OpKind::Swiglu, swiglu);
  t.set(OpKind::SwigluBackward, swiglu_backward);
  t.set(OpKind::GeluBackward, gelu_backward);
  t.set(OpKind::Cast, cast);
  t.set(OpKind::Sum, sum);
  t.set(OpKind::Mean, mean);
  t.set(OpKind::BroadcastTo, broadcast_to);
}

}  // namespace solo
