// CUDA elementwise, broadcast and reduction kernels. Equal-shape operands run one flat
// grid-stride loop; broadcasts go through a coalesced plan (size-1 dims dropped, neighbours
// merged, at most 8 dims) passed by value, which maps a flat output index to each input's
// offset. Reductions are matched to row sums ([M, R] -> [M]) and column sums
// ([A, R, N] -> [A, N]), split into a per-block partial pass and a second pass when there are
// too few rows or columns to fill the GPU; no float atomics, so results are deterministic.
// bf16/f16 compute in f32, f64 in f64, integers in their own type; reductions accumulate
// floats in f32 (f64 for f64).
#include <cuda_fp16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "solo/backend/cuda/cuda_util.cuh"
#include "solo/backend/kernel_util.h"
#include "solo/core/half.h"

namespace solo {
namespace {

using cuda::blocks_for;
using cuda::check_launch;
using cuda::stream_of;

constexpr int kThreads = 256;
constexpr int kMaxDims = 8;

// ---- dtype plumbing ------------------------------------------------------------------------

// The type arithmetic runs in: half types widen to float.
template <class T>
struct Compute {
  using type = T;
};
template <>
struct Compute<__nv_bfloat16> {
  using type = float;
};
template <>
struct Compute<__half> {
  using type = float;
};
template <class T>
using compute_t = typename Compute<T>::type;

template <class T>
__device__ __forceinline__ compute_t<T> load(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(v);
  else if constexpr (std::is_same_v<T, __half>)
    return __half2float(v);
  else
    return v;
}
template <class T, class C>
__device__ __forceinline__ T store(C v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half(static_cast<float>(v));
  else
    return static_cast<T>(v);
}

// Accumulator of a reduction: f32 for f32 and half types, f64 for f64, int64 for integers
// (integer sums wrap identically in any order, as on cpu).
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double,
                                 std::conditional_t<std::is_integral_v<T>, int64_t, float>>;

// f(T{}) for the dtypes arithmetic supports: f32, bf16, f64, i32, i64.
template <class F>
void dispatch_arith(OpKind op, DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::BF16:
      f(__nv_bfloat16{});
      return;
    case DType::F64:
      f(double{});
      return;
    case DType::I32:
      f(int32_t{});
      return;
    case DType::I64:
      f(int64_t{});
      return;
    default:
      SOLO_FAIL(op_name(op), ": dtype ", dtype_name(dt), " is not supported on cuda");
  }
}

// f(T{}) for the float dtypes: f32, bf16, f64.
template <class F>
void dispatch_floating(OpKind op, DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::BF16:
      f(__nv_bfloat16{});
      return;
    case DType::F64:
      f(double{});
      return;
    default:
      SOLO_FAIL(op_name(op), ": dtype ", dtype_name(dt), " is not supported on cuda");
  }
}

// f(U{}) with an unsigned type of the dtype's size, for kernels that only move elements.
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

// ---- broadcast plan ------------------------------------------------------------------------

// Output dims (coalesced) and, per operand, the element stride along each (0 = broadcast).
template <int K>
struct Bcast {
  int rank;
  int64_t dims[kMaxDims];
  int64_t strides[K][kMaxDims];
};

// As the cpu plan: drop size-1 output dims, merge neighbours every operand steps through
// alike, so [B, T, C] + [C] becomes [B*T, C] with strides {C, 1} and {0, 1}.
template <int K>
Bcast<K> plan_broadcast(OpKind op, const Shape& out, const std::array<const Shape*, K>& ins) {
  std::array<std::vector<int64_t>, K> full;
  for (int k = 0; k < K; ++k) full[k] = kernels::broadcast_strides(*ins[k], out);
  std::vector<int64_t> dims;
  std::array<std::vector<int64_t>, K> st;
  for (int d = 0; d < out.rank(); ++d) {
    const auto du = static_cast<size_t>(d);
    if (out[d] == 1) continue;
    bool merge = !dims.empty();
    for (int k = 0; k < K && merge; ++k) merge = st[k].back() == full[k][du] * out[d];
    if (merge) {
      dims.back() *= out[d];
      for (int k = 0; k < K; ++k) st[k].back() = full[k][du];
    } else {
      dims.push_back(out[d]);
      for (int k = 0; k < K; ++k) st[k].push_back(full[k][du]);
    }
  }
  SOLO_CHECK(dims.size() <= kMaxDims, op_name(op), ": broadcast of output shape ", out.str(),
             " needs more than ", kMaxDims, " dims on cuda");
  Bcast<K> p{};
  p.rank = static_cast<int>(dims.size());
  for (int d = 0; d < p.rank; ++d) {
    p.dims[d] = dims[static_cast<size_t>(d)];
    for (int k = 0; k < K; ++k) p.strides[k][d] = st[k][static_cast<size_t>(d)];
  }
  return p;
}

// Offsets of every operand for flat output index i. I is uint32 when the output is small
// enough: 64-bit division is several times slower on the GPU.
template <class I, int K>
__device__ __forceinline__ void bcast_offsets(const Bcast<K>& p, I i, I (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
  for (int d = p.rank - 1; d >= 0; --d) {
    const I n = static_cast<I>(p.dims[d]);
    const I q = i % n;
    i /= n;
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += q * static_cast<I>(p.strides[k][d]);
  }
}

bool fits_u32(int64_t n) {
  return n < (int64_t{1} << 31);
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ---- full ----------------------------------------------------------------------------------

// y [n] = pattern (the value's bit pattern in y's dtype)
template <class U>
__global__ void fill_kernel(U* y, int64_t n, U pattern) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = pattern;
}

// Fills y with the raw bits `bits` (low bytes), any dtype.
void fill_bits(const KernelCall& c, const TensorRef& y, uint64_t bits) {
  const int64_t n = y.numel();
  if (n == 0) return;
  if (bits == 0) {
    SOLO_CUDA_CHECK(cudaMemsetAsync(y.data, 0, y.bytes(), stream_of(c)));
    return;
  }
  dispatch_bytes(y.dtype, [&](auto zero) {
    using U = decltype(zero);
    U pattern;
    std::memcpy(&pattern, &bits, sizeof(U));  // little-endian: the low bytes hold the value
    fill_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream_of(c)>>>(y.as<U>(), n, pattern);
    check_launch(op_name(c.op));
  });
}

// The bit pattern of v in dtype dt, converted as the cpu kernel does.
uint64_t value_bits(DType dt, double v) {
  uint64_t bits = 0;
  switch (dt) {
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
  return bits;
}

void full(const KernelCall& c) {
  fill_bits(c, c.out[0], value_bits(c.out[0].dtype, c.attrs.f("value")));
}

// ---- flat maps ---------------------------------------------------------------------------

// V elements moved as one aligned load/store (16 bytes of T).
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// y [n] = f(x0 [n]) (K = 1) or f(x0 [n], x1 [n]) (K = 2), V elements per step: whole packs
// first, then the tail element by element.
template <int V, int K, class T, class Y, class F>
__global__ void map_flat(const T* x0, const T* x1, Y* y, int64_t n, F f) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t packs = n / V;
  for (int64_t i = tid; i < packs; i += stride) {
    const Pack<T, V> p0 = reinterpret_cast<const Pack<T, V>*>(x0)[i];
    Pack<Y, V> out;
    if constexpr (K == 2) {
      const Pack<T, V> p1 = reinterpret_cast<const Pack<T, V>*>(x1)[i];
#pragma unroll
      for (int k = 0; k < V; ++k) out.v[k] = store<Y>(f(load(p0.v[k]), load(p1.v[k])));
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) out.v[k] = store<Y>(f(load(p0.v[k])));
    }
    reinterpret_cast<Pack<Y, V>*>(y)[i] = out;
  }
  for (int64_t i = packs * V + tid; i < n; i += stride) {
    if constexpr (K == 2)
      y[i] = store<Y>(f(load(x0[i]), load(x1[i])));
    else
      y[i] = store<Y>(f(load(x0[i])));
  }
}

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Runs map_flat with 16-byte packs when every pointer allows it (x1 is null for K = 1).
template <int K, class T, class Y, class F>
void launch_map(const KernelCall& c, const T* x0, const T* x1, Y* y, int64_t n, F f) {
  if (n == 0) return;
  constexpr int V = sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));
  const bool wide = aligned(x0, sizeof(T) * V) && (K == 1 || aligned(x1, sizeof(T) * V)) &&
                    aligned(y, sizeof(Y) * V);
  if (wide)
    map_flat<V, K>
        <<<blocks_for(ceil_div(n, V), kThreads), kThreads, 0, stream_of(c)>>>(x0, x1, y, n, f);
  else
    map_flat<1, K><<<blocks_for(n, kThreads), kThreads, 0, stream_of(c)>>>(x0, x1, y, n, f);
  check_launch(op_name(c.op));
}

// ---- binary ------------------------------------------------------------------------------

struct AddOp {
  template <class C>
  __device__ C operator()(C a, C b) const {
    return a + b;
  }
};
struct SubOp {
  template <class C>
  __device__ C operator()(C a, C b) const {
    return a - b;
  }
};
struct MulOp {
  template <class C>
  __device__ C operator()(C a, C b) const {
    return a * b;
  }
};
struct DivOp {
  template <class C>
  __device__ C operator()(C a, C b) const {
    return a / b;
  }
};
// As the cpu kernels: a NaN in `a` survives maximum, one in `b` does not (and vice versa).
struct MaxOp {
  template <class C>
  __device__ C operator()(C a, C b) const {
    return a < b ? b : a;
  }
};
struct MinOp {
  template <class C>
  __device__ C operator()(C a, C b) const {
    return b < a ? b : a;
  }
};
struct LessOp {
  template <class C>
  __device__ uint8_t operator()(C a, C b) const {
    return a < b;
  }
};

// y [n] = op(a[bcast], b[bcast])
template <class I, class T, class Y, class Op>
__global__ void binary_bcast(const T* a, const T* b, Y* y, I n, Bcast<2> p, Op op) {
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I off[2];
    bcast_offsets(p, i, off);
    y[i] = store<Y>(op(load(a[off[0]]), load(b[off[1]])));
  }
}

// Y = T, or uint8_t for comparisons.
template <class T, class Y, class Op>
void launch_binary(const KernelCall& c, Op op) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const int64_t n = y.numel();
  if (n == 0) return;
  if (a.numel() == n && b.numel() == n) {  // no broadcast
    launch_map<2>(c, a.as<const T>(), b.as<const T>(), y.as<Y>(), n, op);
    return;
  }
  const unsigned blocks = blocks_for(n, kThreads);
  const auto p = plan_broadcast<2>(c.op, y.shape, {&a.shape, &b.shape});
  if (fits_u32(n))
    binary_bcast<uint32_t><<<blocks, kThreads, 0, stream_of(c)>>>(
        a.as<const T>(), b.as<const T>(), y.as<Y>(), static_cast<uint32_t>(n), p, op);
  else
    binary_bcast<int64_t><<<blocks, kThreads, 0, stream_of(c)>>>(a.as<const T>(), b.as<const T>(),
                                                                 y.as<Y>(), n, p, op);
  check_launch(op_name(c.op));
}

template <class Op>
void binary(const KernelCall& c, Op op) {
  dispatch_arith(c.op, c.out[0].dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_binary<T, T>(c, op);
  });
}

void add(const KernelCall& c) {
  binary(c, AddOp{});
}
void sub(const KernelCall& c) {
  binary(c, SubOp{});
}
void mul(const KernelCall& c) {
  binary(c, MulOp{});
}
void maximum(const KernelCall& c) {
  binary(c, MaxOp{});
}
void minimum(const KernelCall& c) {
  binary(c, MinOp{});
}
void div(const KernelCall& c) {
  // Integer division is not defined for this op (as on cpu).
  dispatch_floating(c.op, c.out[0].dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_binary<T, T>(c, DivOp{});
  });
}
// a < b, broadcast, as Bool
void less(const KernelCall& c) {
  dispatch_arith(c.op, c.in[0].dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_binary<T, uint8_t>(c, LessOp{});
  });
}

// ---- where -------------------------------------------------------------------------------

// y [n] = truth(cond) ? a : b, all broadcast; cond is read as raw bits of its size and is
// true when (bits & mask) != 0: the mask drops the sign bit of float conditions, so -0 is
// false and NaN true (as on cpu), and is all ones for integers and Bool.
template <class I, class C, class U>
__global__ void where_kernel(const C* cond, C mask, const U* a, const U* b, U* y, I n, Bcast<3> p) {
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I off[3];
    bcast_offsets(p, i, off);
    y[i] = (cond[off[0]] & mask) != 0 ? a[off[1]] : b[off[2]];
  }
}

void where(const KernelCall& c) {
  const TensorRef &cond = c.in[0], &a = c.in[1], &b = c.in[2], &y = c.out[0];
  const int64_t n = y.numel();
  if (n == 0) return;
  const auto p = plan_broadcast<3>(c.op, y.shape, {&cond.shape, &a.shape, &b.shape});
  const bool is_float = is_floating(cond.dtype);
  dispatch_bytes(cond.dtype, [&](auto czero) {
    using C = decltype(czero);
    const C mask =
        is_float ? static_cast<C>(~(C(1) << (8 * sizeof(C) - 1))) : static_cast<C>(~C(0));
    dispatch_bytes(y.dtype, [&](auto zero) {
      using U = decltype(zero);
      const unsigned blocks = blocks_for(n, kThreads);
      if (fits_u32(n))
        where_kernel<uint32_t><<<blocks, kThreads, 0, stream_of(c)>>>(
            cond.as<const C>(), mask, a.as<const U>(), b.as<const U>(), y.as<U>(),
            static_cast<uint32_t>(n), p);
      else
        where_kernel<int64_t><<<blocks, kThreads, 0, stream_of(c)>>>(
            cond.as<const C>(), mask, a.as<const U>(), b.as<const U>(), y.as<U>(), n, p);
      check_launch("Where");
    });
  });
}

// ---- unary -------------------------------------------------------------------------------

// Device math overloads by compute type (float or double; integers only reach the ops that
// are plain arithmetic).
__device__ __forceinline__ float dexp(float x) {
  return expf(x);
}
__device__ __forceinline__ double dexp(double x) {
  return exp(x);
}
__device__ __forceinline__ float dlog(float x) {
  return logf(x);
}
__device__ __forceinline__ double dlog(double x) {
  return log(x);
}
__device__ __forceinline__ float dsqrt(float x) {
  return sqrtf(x);
}
__device__ __forceinline__ double dsqrt(double x) {
  return sqrt(x);
}
__device__ __forceinline__ float dtanh(float x) {
  return tanhf(x);
}
__device__ __forceinline__ double dtanh(double x) {
  return tanh(x);
}
__device__ __forceinline__ float derf(float x) {
  return erff(x);
}
__device__ __forceinline__ double derf(double x) {
  return erf(x);
}
__device__ __forceinline__ float dpow(float x, float p) {
  return powf(x, p);
}
__device__ __forceinline__ double dpow(double x, double p) {
  return pow(x, p);
}

struct AddScalarOp {
  double s;
  template <class C>
  __device__ C operator()(C x) const {
    return x + static_cast<C>(s);
  }
};
struct MulScalarOp {
  double s;
  template <class C>
  __device__ C operator()(C x) const {
    return x * static_cast<C>(s);
  }
};
// Common exponents avoid the general pow, as on cpu (which they must match bit for bit).
struct PowOp {
  double p;
  template <class C>
  __device__ C operator()(C x) const {
    if (p == 1.0) return x;
    if (p == 2.0) return x * x;
    if (p == 3.0) return x * x * x;
    if (p == 0.5) return dsqrt(x);
    if (p == -1.0) return C(1) / x;
    return dpow(x, static_cast<C>(p));
  }
};
struct NegOp {
  template <class C>
  __device__ C operator()(C x) const {
    return -x;
  }
};
struct ExpOp {
  template <class C>
  __device__ C operator()(C x) const {
    return dexp(x);
  }
};
struct LogOp {
  template <class C>
  __device__ C operator()(C x) const {
    return dlog(x);
  }
};
struct SqrtOp {
  template <class C>
  __device__ C operator()(C x) const {
    return dsqrt(x);
  }
};
struct RsqrtOp {
  template <class C>
  __device__ C operator()(C x) const {
    return C(1) / dsqrt(x);  // not rsqrtf: keep the cpu's correctly rounded result
  }
};
// silu(x) = x / (1 + e^-x)
struct SiluOp {
  template <class C>
  __device__ C operator()(C x) const {
    return x / (C(1) + dexp(-x));
  }
};

constexpr double kSqrt2OverPi = 0.7978845608028654, kGeluC = 0.044715;
constexpr double kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;

// exact: x Phi(x); tanh (GPT-2): x/2 (1 + tanh(k (x + 0.044715 x^3)))
struct GeluOp {
  bool tanh_approx;
  template <class C>
  __device__ C operator()(C x) const {
    if (tanh_approx) {
      const C u = C(kSqrt2OverPi) * (x + C(kGeluC) * x * x * x);
      return C(0.5) * x * (C(1) + dtanh(u));
    }
    return C(0.5) * x * (C(1) + derf(x * C(kInvSqrt2)));
  }
};
// silu'(x) = s (1 + x (1 - s)), s = sigmoid(x)
struct SiluSlope {
  template <class C>
  __device__ C operator()(C x) const {
    const C s = C(1) / (C(1) + dexp(-x));
    return s * (C(1) + x * (C(1) - s));
  }
};
// tanh: 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(k (x + c x^3));
// exact: Phi(x) + x phi(x)
struct GeluSlope {
  bool tanh_approx;
  template <class C>
  __device__ C operator()(C x) const {
    if (tanh_approx) {
      const C x2 = x * x;
      const C t = dtanh(C(kSqrt2OverPi) * x * (C(1) + C(kGeluC) * x2));
      return C(0.5) * (C(1) + t) +
             C(0.5) * x * (C(1) - t * t) * C(kSqrt2OverPi) * (C(1) + C(3 * kGeluC) * x2);
    }
    const C cdf = C(0.5) * (C(1) + derf(x * C(kInvSqrt2)));
    return cdf + x * dexp(C(-0.5) * x * x) * C(kInvSqrt2Pi);
  }
};

// ints: also i32/i64 (for the ops that are plain arithmetic).
template <bool ints, class Op>
void unary(const KernelCall& c, Op op) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  auto run = [&](auto zero) {
    using T = decltype(zero);
    // x [n] -> y [n] = op(x)
    launch_map<1>(c, x.as<const T>(), static_cast<const T*>(nullptr), y.as<T>(), y.numel(), op);
  };
  if constexpr (ints)
    dispatch_arith(c.op, y.dtype, run);
  else
    dispatch_floating(c.op, y.dtype, run);
}

void add_scalar(const KernelCall& c) {
  unary<true>(c, AddScalarOp{c.attrs.f("value")});
}
void mul_scalar(const KernelCall& c) {
  unary<true>(c, MulScalarOp{c.attrs.f("value")});
}
void pow_scalar(const KernelCall& c) {
  unary<false>(c, PowOp{c.attrs.f("value")});
}
void neg(const KernelCall& c) {
  unary<true>(c, NegOp{});
}
void exp(const KernelCall& c) {
  unary<false>(c, ExpOp{});
}
void log(const KernelCall& c) {
  unary<false>(c, LogOp{});
}
void sqrt(const KernelCall& c) {
  unary<false>(c, SqrtOp{});
}
void rsqrt(const KernelCall& c) {
  unary<false>(c, RsqrtOp{});
}
void silu(const KernelCall& c) {
  unary<false>(c, SiluOp{});
}
void gelu(const KernelCall& c) {
  unary<false>(c, GeluOp{c.attrs.i("tanh") != 0});
}

// f(x, dy) = dy * slope(x)
template <class Slope>
struct BackwardOp {
  Slope slope;
  template <class C>
  __device__ C operator()(C x, C dy) const {
    return dy * slope(x);
  }
};

template <class Slope>
void activation_backward(const KernelCall& c, Slope slope) {
  const TensorRef &x = c.in[0], &dy = c.in[1], &dx = c.out[0];
  dispatch_floating(c.op, dx.dtype, [&](auto zero) {
    using T = decltype(zero);
    // x [n], dy [n] -> dx [n] = dy * slope(x)
    launch_map<2>(c, x.as<const T>(), dy.as<const T>(), dx.as<T>(), dx.numel(),
                  BackwardOp<Slope>{slope});
  });
}

void silu_backward(const KernelCall& c) {
  activation_backward(c, SiluSlope{});
}

// silu(gate) * up
struct SwigluOp {
  template <class C>
  __device__ C operator()(C gate, C up) const {
    return SiluOp{}(gate)*up;
  }
};

void swiglu(const KernelCall& c) {
  const TensorRef &gate = c.in[0], &up = c.in[1], &y = c.out[0];
  dispatch_floating(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    // gate [n], up [n] -> y [n]
    launch_map<2>(c, gate.as<const T>(), up.as<const T>(), y.as<T>(), y.numel(), SwigluOp{});
  });
}

// gate, up, dy [n] -> dgate = dy up silu'(gate), dup = dy silu(gate) [n], in one pass
// (arithmetic in compute_t<T>: f32 for bf16).
template <class T>
__global__ void swiglu_backward_kernel(const T* __restrict__ gate, const T* __restrict__ up,
                                       const T* __restrict__ dy, T* __restrict__ dgate,
                                       T* __restrict__ dup, int64_t n) {
  using C = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const C g = load(gate[i]), d = load(dy[i]);
    const C s = C(1) / (C(1) + dexp(-g));
    dup[i] = store<T>(d * g * s);
    dgate[i] = store<T>(d * load(up[i]) * s * (C(1) + g * (C(1) - s)));
  }
}

void swiglu_backward(const KernelCall& c) {
  const TensorRef &gate = c.in[0], &up = c.in[1], &dy = c.in[2];
  const TensorRef &dgate = c.out[0], &dup = c.out[1];
  const int64_t n = dgate.numel();
  if (n == 0) return;
  dispatch_floating(c.op, dgate.dtype, [&](auto zero) {
    using T = decltype(zero);
    swiglu_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream_of(c)>>>(
        gate.as<const T>(), up.as<const T>(), dy.as<const T>(), dgate.as<T>(), dup.as<T>(), n);
  });
  check_launch("SwigluBackward");
}
void gelu_backward(const KernelCall& c) {
  activation_backward(c, GeluSlope{c.attrs.i("tanh") != 0});
}

// ---- cast --------------------------------------------------------------------------------

// Storage type of each dtype, as a tag carrying the dtype (Bool and a 1-byte int differ).
template <DType D>
struct Tag {
  static constexpr DType dtype = D;
  using type = std::conditional_t<
      D == DType::F32, float,
      std::conditional_t<
          D == DType::F64, double,
          std::conditional_t<
              D == DType::BF16, __nv_bfloat16,
              std::conditional_t<
                  D == DType::F16, __half,
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

// Float to integer truncates toward zero; NaN gives 0 and out-of-range values saturate
// (the cpu kernel's rule, where C++ would be undefined).
template <class I>
__device__ __forceinline__ I truncate_to_int(double v) {
  if (isnan(v)) return 0;
  if (v >= -static_cast<double>(std::numeric_limits<I>::min()))
    return std::numeric_limits<I>::max();
  if (v <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  return static_cast<I>(v);
}

// Widens an element: half types to float, integers and Bool to int64, floats unchanged.
template <DType D>
__device__ __forceinline__ auto widen(typename Tag<D>::type v) {
  if constexpr (D == DType::BF16)
    return __bfloat162float(v);
  else if constexpr (D == DType::F16)
    return __half2float(v);
  else if constexpr (D == DType::I32 || D == DType::I64 || D == DType::Bool)
    return static_cast<int64_t>(v);
  else
    return v;
}

// Narrows a widened element to dtype D; half types round from f32 (as on cpu).
template <DType D, class W>
__device__ __forceinline__ typename Tag<D>::type narrow(W w) {
  if constexpr (D == DType::F32)
    return static_cast<float>(w);
  else if constexpr (D == DType::F64)
    return static_cast<double>(w);
  else if constexpr (D == DType::BF16)
    return __float2bfloat16(static_cast<float>(w));
  else if constexpr (D == DType::F16)
    return __float2half(static_cast<float>(w));
  else if constexpr (D == DType::Bool)
    return static_cast<uint8_t>(w != W(0));
  else if constexpr (std::is_integral_v<W>)
    return static_cast<typename Tag<D>::type>(w);  // wraps
  else
    return truncate_to_int<typename Tag<D>::type>(static_cast<double>(w));
}

// x [n] -> y [n] in y's dtype
template <DType F, DType D>
__global__ void cast_kernel(const typename Tag<F>::type* x, typename Tag<D>::type* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = narrow<D>(widen<F>(x[i]));
}

void cast(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const int64_t n = y.numel();
  if (n == 0) return;
  if (x.dtype == y.dtype) {
    SOLO_CUDA_CHECK(
        cudaMemcpyAsync(y.data, x.data, y.bytes(), cudaMemcpyDeviceToDevice, stream_of(c)));
    return;
  }
  dispatch_tag(x.dtype, [&](auto from) {
    dispatch_tag(y.dtype, [&](auto to) {
      constexpr DType F = decltype(from)::dtype, D = decltype(to)::dtype;
      cast_kernel<F, D><<<blocks_for(n, kThreads), kThreads, 0, stream_of(c)>>>(
          x.as<const typename Tag<F>::type>(), y.as<typename Tag<D>::type>(), n);
      check_launch("Cast");
    });
  });
}

// ---- reductions --------------------------------------------------------------------------

// The final value of a reduction: the sum, or the sum / count for mean (a division, as cpu).
template <class A>
__device__ __forceinline__ A finish(A acc, bool mean, A count) {
  return mean ? acc / count : acc;
}

template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Rows of length R, one warp per row, 8 rows per block: x [M, R] -> y [M]. For short rows.
template <class In, class Out, class A>
__global__ void row_reduce_warp(const In* x, Out* y, int64_t M, int64_t R, bool mean, A count) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= M) return;
  const int lane = threadIdx.x % 32;
  const In* xr = x + row * R;
  A acc = 0;
  for (int64_t r = lane; r < R; r += 32) acc += static_cast<A>(load(xr[r]));
  acc = warp_sum(acc);
  if (lane == 0) y[row] = store<Out>(finish(acc, mean, count));
}

// One block per (row, chunk): x [M, R] -> y [M, C], y[m, c] = sum of x[m, c*chunk ...
// min(R, (c+1)*chunk)). With C == 1 this is the final output (mean applies); otherwise the
// partials are reduced again by a second launch.
template <class In, class Out, class A>
__global__ void row_reduce_block(const In* x, Out* y, int64_t R, int64_t C, int64_t chunk,
                                 bool mean, A count) {
  const int64_t row = blockIdx.x / C, part = blockIdx.x % C;
  const int64_t r0 = part * chunk, r1 = min(R, r0 + chunk);
  const In* xr = x + row * R;
  A acc = 0;
  for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) acc += static_cast<A>(load(xr[r]));
  acc = warp_sum(acc);
  __shared__ A warps[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warps[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x / 32;
    acc = lane < nw ? warps[lane] : A(0);
    acc = warp_sum(acc);
    if (lane == 0) y[blockIdx.x] = store<Out>(finish(acc, mean && C == 1, count));
  }
}

// Column sums: x [A, R, N] -> y [A, C, N], y[a, c, n] = sum over rows of chunk c of x[a, r, n].
// Blocks of 32 x 8 threads: 32 adjacent columns (coalesced reads), 8 row lanes whose partials
// are added in a fixed order through shared memory. grid (ceil(N/32), C, A).
template <class In, class Out, class Acc>
__global__ void col_reduce(const In* x, Out* y, int64_t R, int64_t N, int64_t chunk, bool mean,
                           Acc count) {
  const int64_t n = blockIdx.x * 32 + threadIdx.x;
  const int64_t a = blockIdx.z, part = blockIdx.y, C = gridDim.y;
  const int64_t r0 = part * chunk, r1 = min(R, r0 + chunk);
  Acc acc = 0;
  if (n < N) {
    const In* xa = x + a * R * N + n;
    for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y)
      acc += static_cast<Acc>(load(xa[r * N]));
  }
  __shared__ Acc partial[8][33];
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && n < N) {
    Acc s = 0;
    for (int j = 0; j < static_cast<int>(blockDim.y); ++j) s += partial[j][threadIdx.x];
    y[(a * C + part) * N + n] = store<Out>(finish(s, mean && C == 1, count));
  }
}

// Any other pattern: one thread per output element; the reduced sub-space (rdims, with the
// input strides rstr) is walked in row-major order. kdims/kstr: kept dims and their strides.
struct GatherPlan {
  int nk, nr;
  int64_t kdims[kMaxDims], kstr[kMaxDims], rdims[kMaxDims], rstr[kMaxDims];
  int64_t rcount;
};

template <class T, class A>
__global__ void gather_reduce(const T* x, T* y, int64_t out_n, GatherPlan p, bool mean, A count) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < out_n;
       o += int64_t(gridDim.x) * blockDim.x) {
    int64_t base = 0, rem = o;
    for (int d = p.nk - 1; d >= 0; --d) {
      base += (rem % p.kdims[d]) * p.kstr[d];
      rem /= p.kdims[d];
    }
    A acc = 0;
    for (int64_t r = 0; r < p.rcount; ++r) {
      int64_t off = 0, rr = r;
      for (int d = p.nr - 1; d >= 0; --d) {
        off += (rr % p.rdims[d]) * p.rstr[d];
        rr /= p.rdims[d];
      }
      acc += static_cast<A>(load(x[base + off]));
    }
    y[o] = store<T>(finish(acc, mean, count));
  }
}

// Scratch for partial sums: the context's cuBLASLt workspace when it is large enough (it is
// only used by work queued on this same stream, so stream order makes sharing safe), else
// stream-ordered cudaMallocAsync, freed once the second pass is queued.
struct Scratch {
  void* p = nullptr;
  bool owned = false;
};
Scratch scratch(const KernelCall& c, size_t bytes) {
  const CudaContext& ctx = cuda::context_of(c);
  if (bytes <= ctx.workspace_bytes) return {ctx.workspace, false};
  Scratch s{nullptr, true};
  SOLO_CUDA_CHECK(cudaMallocAsync(&s.p, bytes, stream_of(c)));
  return s;
}
void release(const KernelCall& c, const Scratch& s) {
  if (s.owned) SOLO_CUDA_CHECK(cudaFreeAsync(s.p, stream_of(c)));
}

// x [M, R] -> y [M]
template <class T, class A>
void row_sums(const KernelCall& c, const T* x, T* y, int64_t M, int64_t R, bool mean, A count) {
  const cudaStream_t s = stream_of(c);
  const int64_t sms = std::max(1, cuda::context_of(c).sm_count);
  if (R <= 256) {  // short rows: a warp each
    const int64_t per_block = kThreads / 32;
    row_reduce_warp<T, T, A><<<static_cast<unsigned>(ceil_div(M, per_block)), kThreads, 0, s>>>(
        x, y, M, R, mean, count);
    check_launch(op_name(c.op));
    return;
  }
  // Few long rows: split each into C chunks (>= 4096 elements) so ~4 blocks run per SM.
  int64_t C = 1;
  if (M < 2 * sms) C = std::max<int64_t>(1, std::min(ceil_div(4 * sms, M), ceil_div(R, 4096)));
  if (M * C > (int64_t{1} << 31) - 1) C = 1;
  const int64_t chunk = ceil_div(R, C);
  C = ceil_div(R, chunk);
  if (C == 1) {
    row_reduce_block<T, T, A>
        <<<static_cast<unsigned>(M), kThreads, 0, s>>>(x, y, R, 1, chunk, mean, count);
    check_launch(op_name(c.op));
    return;
  }
  const Scratch buf = scratch(c, static_cast<size_t>(M * C) * sizeof(A));  // [M, C]
  A* part = static_cast<A*>(buf.p);
  row_reduce_block<T, A, A>
      <<<static_cast<unsigned>(M * C), kThreads, 0, s>>>(x, part, R, C, chunk, false, count);
  check_launch(op_name(c.op));
  row_reduce_block<A, T, A>
      <<<static_cast<unsigned>(M), kThreads, 0, s>>>(part, y, C, 1, C, mean, count);
  check_launch(op_name(c.op));
  release(c, buf);
}

// x [A, R, N] -> y [A, N] (leading or middle axes; bias gradients [N, D] -> [D])
template <class T, class Acc>
void column_sums(const KernelCall& c, const T* x, T* y, int64_t A, int64_t R, int64_t N, bool mean,
                 Acc count) {
  const cudaStream_t s = stream_of(c);
  const int64_t sms = std::max(1, cuda::context_of(c).sm_count);
  const int64_t col_blocks = ceil_div(N, 32), base = col_blocks * A;
  // Too few column blocks to fill the GPU: split the rows into C chunks of >= 64 rows.
  int64_t C = 1;
  if (base < 2 * sms) C = std::max<int64_t>(1, std::min(ceil_div(4 * sms, base), ceil_div(R, 64)));
  C = std::min<int64_t>(C, 65535);
  const int64_t chunk = ceil_div(R, C);
  C = std::max<int64_t>(1, ceil_div(R, chunk));
  const dim3 block(32, 8);
  if (C == 1) {
    col_reduce<T, T, Acc>
        <<<dim3(static_cast<unsigned>(col_blocks), 1, static_cast<unsigned>(A)), block, 0, s>>>(
            x, y, R, N, std::max<int64_t>(R, 1), mean, count);
    check_launch(op_name(c.op));
    return;
  }
  const Scratch buf = scratch(c, static_cast<size_t>(A * C * N) * sizeof(Acc));  // [A, C, N]
  Acc* part = static_cast<Acc*>(buf.p);
  col_reduce<T, Acc, Acc><<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(C),
                                 static_cast<unsigned>(A)),
                            block, 0, s>>>(x, part, R, N, chunk, false, count);
  check_launch(op_name(c.op));
  col_reduce<Acc, T, Acc>
      <<<dim3(static_cast<unsigned>(col_blocks), 1, static_cast<unsigned>(A)), block, 0, s>>>(
          part, y, C, N, C, mean, count);
  check_launch(op_name(c.op));
  release(c, buf);
}

// Sum / mean of x over attrs "axes". Dims are merged into alternating groups of kept and
// reduced axes (size-1 dims dropped), then matched to a fast pattern.
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
    using A = acc_t<T>;
    const int64_t out_n = y.numel();
    if (out_n == 0) return;
    if (x.numel() == 0) {  // empty sums: 0, and mean 0 / 0 = NaN (as PyTorch)
      fill_bits(c, y, mean ? value_bits(y.dtype, std::numeric_limits<double>::quiet_NaN()) : 0);
      return;
    }
    const T* px = x.as<const T>();
    T* py = y.as<T>();
    const auto cnt = static_cast<A>(count);
    if (dims.empty()) {  // a single element: [1, 1, 1]
      column_sums<T, A>(c, px, py, 1, 1, 1, mean, cnt);
    } else if (dims.size() == 1 && !red[0]) {  // nothing of size > 1 reduced
      column_sums<T, A>(c, px, py, 1, 1, dims[0], mean, cnt);
    } else if (dims.size() == 1) {  // everything: [R] -> []
      row_sums<T, A>(c, px, py, 1, dims[0], mean, cnt);
    } else if (dims.size() == 2 && !red[0]) {  // trailing axes: [M, R] -> [M]
      row_sums<T, A>(c, px, py, dims[0], dims[1], mean, cnt);
    } else if (dims.size() == 2) {  // leading axes: [R, N] -> [N]
      column_sums<T, A>(c, px, py, 1, dims[0], dims[1], mean, cnt);
    } else if (dims.size() == 3 && !red[0] && dims[0] <= 65535) {  // [A, R, N] -> [A, N]
      column_sums<T, A>(c, px, py, dims[0], dims[1], dims[2], mean, cnt);
    } else {
      SOLO_CHECK(dims.size() <= kMaxDims, op_name(c.op), ": too many dims on cuda for ",
                 x.shape.str());
      GatherPlan p{};
      std::vector<int64_t> strides(dims.size());
      for (size_t i = dims.size(), acc = 1; i-- > 0;) {
        strides[i] = static_cast<int64_t>(acc);
        acc *= static_cast<size_t>(dims[i]);
      }
      p.rcount = 1;
      for (size_t d = 0; d < dims.size(); ++d) {
        if (red[d]) {
          p.rdims[p.nr] = dims[d];
          p.rstr[p.nr++] = strides[d];
          p.rcount *= dims[d];
        } else {
          p.kdims[p.nk] = dims[d];
          p.kstr[p.nk++] = strides[d];
        }
      }
      gather_reduce<T, A>
          <<<blocks_for(out_n, kThreads), kThreads, 0, stream_of(c)>>>(px, py, out_n, p, mean, cnt);
      check_launch(op_name(c.op));
    }
  };
  if (mean)
    dispatch_floating(c.op, y.dtype, run);
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

// x -> y [n] = x[bcast(i)], any dtype (moved as raw bits)
template <class I, class U>
__global__ void broadcast_kernel(const U* x, U* y, I n, Bcast<1> p) {
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I off[1];
    bcast_offsets(p, i, off);
    y[i] = x[off[0]];
  }
}

void broadcast_to(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const int64_t n = y.numel();
  if (n == 0) return;
  if (x.numel() == n) {
    SOLO_CUDA_CHECK(
        cudaMemcpyAsync(y.data, x.data, y.bytes(), cudaMemcpyDeviceToDevice, stream_of(c)));
    return;
  }
  const auto p = plan_broadcast<1>(c.op, y.shape, {&x.shape});
  dispatch_bytes(y.dtype, [&](auto zero) {
    using U = decltype(zero);
    const unsigned blocks = blocks_for(n, kThreads);
    if (fits_u32(n))
      broadcast_kernel<uint32_t><<<blocks, kThreads, 0, stream_of(c)>>>(
          x.as<const U>(), y.as<U>(), static_cast<uint32_t>(n), p);
    else
      broadcast_kernel<int64_t>
          <<<blocks, kThreads, 0, stream_of(c)>>>(x.as<const U>(), y.as<U>(), n, p);
    check_launch("BroadcastTo");
  });
}

}  // namespace

void register_cuda_elementwise_kernels(KernelTable& t) {
  t.set(OpKind::Full, full);
  t.set(OpKind::Add, add);
  t.set(OpKind::Sub, sub);
  t.set(OpKind::Mul, mul);
  t.set(OpKind::Div, div);
  t.set(OpKind::Maximum, maximum);
  t.set(OpKind::Minimum, minimum);
  t.set(OpKind::Less, less);
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
