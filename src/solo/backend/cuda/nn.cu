// CUDA kernels of the fused nn ops (Softmax, RmsNorm, LayerNorm, Rope, CrossEntropy and their
// Backward ops). Rows are reduced by one warp or one block, always in fp32 (bf16 is only the
// storage type). Weight gradients (dw, db) and the cross-entropy mean reduce over rows through
// per-block partials in a scratch buffer and a second kernel that adds them in a fixed order,
// so results are deterministic (no float atomics).
#include <cmath>
#include <cstdint>

#include "solo/backend/cuda/cuda_util.cuh"
#include "solo/core/rope_scaling.h"

namespace solo {
namespace {

using cuda::blocks_for;
using cuda::check_launch;
using cuda::context_of;
using cuda::dispatch_f32_bf16;
using cuda::from_float;
using cuda::stream_of;
using cuda::to_float;

// ---- reductions -------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the result. red [32].
template <class A>
__device__ A block_sum(A v, A* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : A(0);
  return warp_sum(v);
}

// Online softmax state (running max m, sum of exp(x - m)). -inf entries add nothing, so an
// all -inf row keeps m = -inf, s = 0 (its outputs become NaN, as on the cpu).
__device__ __forceinline__ void online_add(float& m, float& s, float v) {
  if (v == -INFINITY) return;
  if (v > m) {
    s = s * expf(m - v) + 1.f;
    m = v;
  } else {
    s += expf(v - m);
  }
}
__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
  } else if (m2 > m) {
    s = s * expf(m - m2) + s2;
    m = m2;
  } else {
    s += s2 * expf(m2 - m);
  }
}
__device__ __forceinline__ void warp_online_merge(float& m, float& s) {
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
}
// Block-wide merge; every thread gets the result. red_m, red_s [32].
__device__ void block_online_merge(float& m, float& s, float* red_m, float* red_s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  warp_online_merge(m, s);
  __syncthreads();
  if (lane == 0) {
    red_m[warp] = m;
    red_s[warp] = s;
  }
  __syncthreads();
  m = lane < nw ? red_m[lane] : -INFINITY;
  s = lane < nw ? red_s[lane] : 0.f;
  warp_online_merge(m, s);
}

// Threads for one block per row of n elements: about 4 elements a thread, 32..1024.
int row_threads(int64_t n) {
  int t = 32;
  while (t < 1024 && t * 4 < n) t *= 2;
  return t;
}

// Blocks of the dw/db partial-sum kernels: enough to fill the GPU, at most one per row.
unsigned partial_blocks(const KernelCall& c, int64_t rows) {
  const int64_t sms = context_of(c).sm_count > 0 ? context_of(c).sm_count : 132;
  const int64_t nb = rows < 4 * sms ? rows : 4 * sms;
  return static_cast<unsigned>(nb > 0 ? nb : 1);
}

// Scratch device memory ordered on the call's stream (freed after the kernels that use it).
struct Scratch {
  void* p = nullptr;
  cudaStream_t s;
  Scratch(size_t bytes, cudaStream_t stream) : s(stream) {
    SOLO_CUDA_CHECK(cudaMallocAsync(&p, bytes ? bytes : 1, s));
  }
  ~Scratch() { cudaFreeAsync(p, s); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class A>
  A* as() const {
    return static_cast<A*>(p);
  }
};

// A shape seen as [outer, n, inner] around `axis`.
void split_axis(const Shape& s, int axis, int64_t* outer, int64_t* n, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < axis; ++i) *outer *= s[i];
  *n = s[axis];
  for (int i = axis + 1; i < s.rank(); ++i) *inner *= s[i];
}

// ---- softmax ----------------------------------------------------------------------------------

// x [rows, n] -> y [rows, n], one warp per row (n <= 1024).
template <class T>
__global__ void softmax_warp_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows,
                                    int64_t n) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
       r < rows; r += warps) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    float m = -INFINITY, s = 0.f;
    for (int64_t j = lane; j < n; j += 32) online_add(m, s, to_float(xr[j]));
    warp_online_merge(m, s);
    const float inv = 1.f / s;
    for (int64_t j = lane; j < n; j += 32) yr[j] = from_float<T>(expf(to_float(xr[j]) - m) * inv);
  }
}

// x [rows, n] -> y [rows, n], one block per row (long rows).
template <class T>
__global__ void softmax_block_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  __shared__ float red_m[32], red_s[32];
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  T* yr = y + static_cast<int64_t>(blockIdx.x) * n;
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) online_add(m, s, to_float(xr[j]));
  block_online_merge(m, s, red_m, red_s);
  const float inv = 1.f / s;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    yr[j] = from_float<T>(expf(to_float(xr[j]) - m) * inv);
}

// x [outer, n, inner] -> y, softmax along n; one thread per (o, k) column (coalesced in k).
template <class T>
__global__ void softmax_strided_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer,
                                       int64_t n, int64_t inner) {
  const int64_t cols = outer * inner;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = (c / inner) * n * inner + c % inner;
    float m = -INFINITY, s = 0.f;
    for (int64_t j = 0; j < n; ++j) online_add(m, s, to_float(x[base + j * inner]));
    const float inv = 1.f / s;
    for (int64_t j = 0; j < n; ++j)
      y[base + j * inner] = from_float<T>(expf(to_float(x[base + j * inner]) - m) * inv);
  }
}

void softmax(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  int64_t outer, n, inner;
  split_axis(x.shape, static_cast<int>(c.attrs.i("axis")), &outer, &n, &inner);
  if (x.numel() == 0) return;
  dispatch_f32_bf16(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (inner == 1 && n <= 1024) {
      softmax_warp_kernel<T>
          <<<blocks_for(outer, 4), 128, 0, stream_of(c)>>>(x.as<T>(), y.as<T>(), outer, n);
    } else if (inner == 1) {
      softmax_block_kernel<T><<<static_cast<unsigned>(outer), row_threads(n), 0, stream_of(c)>>>(
          x.as<T>(), y.as<T>(), n);
    } else {
      softmax_strided_kernel<T><<<blocks_for(outer * inner, 256), 256, 0, stream_of(c)>>>(
          x.as<T>(), y.as<T>(), outer, n, inner);
    }
    check_launch("Softmax");
  });
}

// y, dy [rows, n] -> dx = y * (dy - sum(dy * y)), one warp per row (n <= 1024).
template <class T>
__global__ void softmax_bwd_warp_kernel(const T* __restrict__ y, const T* __restrict__ dy,
                                        T* __restrict__ dx, int64_t rows, int64_t n) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
       r < rows; r += warps) {
    const int64_t off = r * n;
    float s = 0.f;
    for (int64_t j = lane; j < n; j += 32) s += to_float(dy[off + j]) * to_float(y[off + j]);
    s = warp_sum(s);
    for (int64_t j = lane; j < n; j += 32)
      dx[off + j] = from_float<T>(to_float(y[off + j]) * (to_float(dy[off + j]) - s));
  }
}

// Same, one block per row.
template <class T>
__global__ void softmax_bwd_block_kernel(const T* __restrict__ y, const T* __restrict__ dy,
                                         T* __restrict__ dx, int64_t n) {
  __shared__ float red[32];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * n;
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    s += to_float(dy[off + j]) * to_float(y[off + j]);
  s = block_sum(s, red);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    dx[off + j] = from_float<T>(to_float(y[off + j]) * (to_float(dy[off + j]) - s));
}

// y, dy [outer, n, inner] -> dx, one thread per (o, k) column.
template <class T>
__global__ void softmax_bwd_strided_kernel(const T* __restrict__ y, const T* __restrict__ dy,
                                           T* __restrict__ dx, int64_t outer, int64_t n,
                                           int64_t inner) {
  const int64_t cols = outer * inner;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = (c / inner) * n * inner + c % inner;
    float s = 0.f;
    for (int64_t j = 0; j < n; ++j)
      s += to_float(dy[base + j * inner]) * to_float(y[base + j * inner]);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = base + j * inner;
      dx[i] = from_float<T>(to_float(y[i]) * (to_float(dy[i]) - s));
    }
  }
}

void softmax_backward(const KernelCall& c) {
  const TensorRef &y = c.in[0], &dy = c.in[1], &dx = c.out[0];
  int64_t outer, n, inner;
  split_axis(y.shape, static_cast<int>(c.attrs.i("axis")), &outer, &n, &inner);
  if (y.numel() == 0) return;
  dispatch_f32_bf16(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (inner == 1 && n <= 1024) {
      softmax_bwd_warp_kernel<T><<<blocks_for(outer, 4), 128, 0, stream_of(c)>>>(
          y.as<T>(), dy.as<T>(), dx.as<T>(), outer, n);
    } else if (inner == 1) {
      softmax_bwd_block_kernel<T>
          <<<static_cast<unsigned>(outer), row_threads(n), 0, stream_of(c)>>>(y.as<T>(), dy.as<T>(),
                                                                              dx.as<T>(), n);
    } else {
      softmax_bwd_strided_kernel<T><<<blocks_for(outer * inner, 256), 256, 0, stream_of(c)>>>(
          y.as<T>(), dy.as<T>(), dx.as<T>(), outer, n, inner);
    }
    check_launch("SoftmaxBackward");
  });
}

// ---- rms norm ---------------------------------------------------------------------------------

// x [N, D], w [D] -> y [N, D] = x * rstd * w; one block per row.
template <class T>
__global__ void rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                int64_t D, float eps) {
  __shared__ float red[32];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * D;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = to_float(x[off + i]);
    ss += v * v;
  }
  ss = block_sum(ss, red);
  const float rstd = 1.f / sqrtf(ss / static_cast<float>(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
    y[off + i] = from_float<T>(to_float(x[off + i]) * rstd * to_float(w[i]));
}

void rms_norm(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &y = c.out[0];
  const float eps = static_cast<float>(c.attrs.f("eps"));
  const int64_t D = w.numel(), N = D ? x.numel() / D : 0;
  if (N == 0) return;
  dispatch_f32_bf16(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    rms_norm_kernel<T><<<static_cast<unsigned>(N), row_threads(D), 0, stream_of(c)>>>(
        x.as<T>(), w.as<T>(), y.as<T>(), D, eps);
    check_launch("RmsNorm");
  });
}

// x, dy [N, D], w [D] -> dx [N, D] and partial [gridDim.x, D] (this block's rows of dy * xh).
// With xh = x * rstd, g = dy * w: dx = rstd * (g - xh * mean(g * xh)).
template <class T>
__global__ void rms_norm_bwd_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                    const T* __restrict__ dy, T* __restrict__ dx,
                                    float* __restrict__ partial, int64_t N, int64_t D, float eps) {
  __shared__ float red[32];
  float* acc = partial + static_cast<int64_t>(blockIdx.x) * D;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) acc[i] = 0.f;  // same thread later adds
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const int64_t off = r * D;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const float v = to_float(x[off + i]);
      ss += v * v;
    }
    ss = block_sum(ss, red);
    const float rstd = 1.f / sqrtf(ss / static_cast<float>(D) + eps);
    float gx = 0.f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
      gx += to_float(dy[off + i]) * to_float(w[i]) * (to_float(x[off + i]) * rstd);
    const float m = block_sum(gx, red) / static_cast<float>(D);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const float xh = to_float(x[off + i]) * rstd, d = to_float(dy[off + i]);
      dx[off + i] = from_float<T>(rstd * (d * to_float(w[i]) - xh * m));
      acc[i] += d * xh;
    }
  }
}

// partial [nb, D] -> out [D], out[i] = sum over the nb blocks in a fixed order.
template <class T>
__global__ void sum_partials_kernel(const float* __restrict__ partial, T* __restrict__ out,
                                    int64_t nb, int64_t D) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= D) return;
  float s = 0.f;
  for (int64_t b = 0; b < nb; ++b) s += partial[b * D + i];
  out[i] = from_float<T>(s);
}

void rms_norm_backward(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2], &dx = c.out[0], &dw = c.out[1];
  const float eps = static_cast<float>(c.attrs.f("eps"));
  const int64_t D = w.numel(), N = D ? x.numel() / D : 0;
  if (D == 0) return;
  dispatch_f32_bf16(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const unsigned nb = partial_blocks(c, N);
    Scratch part(static_cast<size_t>(nb) * D * sizeof(float), stream_of(c));
    rms_norm_bwd_kernel<T><<<nb, row_threads(D), 0, stream_of(c)>>>(
        x.as<T>(), w.as<T>(), dy.as<T>(), dx.as<T>(), part.as<float>(), N, D, eps);
    check_launch("RmsNormBackward");
    sum_partials_kernel<T>
        <<<blocks_for(D, 256), 256, 0, stream_of(c)>>>(part.as<float>(), dw.as<T>(), nb, D);
    check_launch("RmsNormBackward");
  });
}

// ---- layer norm -------------------------------------------------------------------------------

// Mean and rstd of row x [D] (two passes, biased variance); every thread gets them.
template <class T>
__device__ void row_moments(const T* x, int64_t D, float eps, float* red, float* mean,
                            float* rstd) {
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += to_float(x[i]);
  const float mu = block_sum(s, red) / static_cast<float>(D);
  float v = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float d = to_float(x[i]) - mu;
    v += d * d;
  }
  v = block_sum(v, red) / static_cast<float>(D);
  *mean = mu;
  *rstd = 1.f / sqrtf(v + eps);
}

// x [N, D], w [D], b [D] -> y = (x - mean) * rstd * w + b; one block per row.
template <class T>
__global__ void layer_norm_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ b, T* __restrict__ y, int64_t D,
                                  float eps) {
  __shared__ float red[32];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * D;
  float mean, rstd;
  row_moments(x + off, D, eps, red, &mean, &rstd);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
    y[off + i] =
        from_float<T>((to_float(x[off + i]) - mean) * rstd * to_float(w[i]) + to_float(b[i]));
}

void layer_norm(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &b = c.in[2], &y = c.out[0];
  const float eps = static_cast<float>(c.attrs.f("eps"));
  const int64_t D = w.numel(), N = D ? x.numel() / D : 0;
  if (N == 0) return;
  dispatch_f32_bf16(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    layer_norm_kernel<T><<<static_cast<unsigned>(N), row_threads(D), 0, stream_of(c)>>>(
        x.as<T>(), w.as<T>(), b.as<T>(), y.as<T>(), D, eps);
    check_launch("LayerNorm");
  });
}

// x, dy [N, D], w [D] -> dx [N, D] and partial [2, gridDim.x, D]: this block's rows of dy * xh
// (first set) and of dy (second). dx = rstd * (g - mean(g) - xh * mean(g * xh)), g = dy * w.
template <class T>
__global__ void layer_norm_bwd_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                      const T* __restrict__ dy, T* __restrict__ dx,
                                      float* __restrict__ partial, int64_t N, int64_t D,
                                      float eps) {
  __shared__ float red[32];
  float* acc_w = partial + static_cast<int64_t>(blockIdx.x) * D;
  float* acc_b = partial + (static_cast<int64_t>(gridDim.x) + blockIdx.x) * D;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) acc_w[i] = acc_b[i] = 0.f;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const int64_t off = r * D;
    float mean, rstd;
    row_moments(x + off, D, eps, red, &mean, &rstd);
    float gs = 0.f, gxs = 0.f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const float g = to_float(dy[off + i]) * to_float(w[i]);
      gs += g;
      gxs += g * ((to_float(x[off + i]) - mean) * rstd);
    }
    const float g_mean = block_sum(gs, red) / static_cast<float>(D);
    const float gx_mean = block_sum(gxs, red) / static_cast<float>(D);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const float xh = (to_float(x[off + i]) - mean) * rstd, d = to_float(dy[off + i]);
      dx[off + i] = from_float<T>(rstd * (d * to_float(w[i]) - g_mean - xh * gx_mean));
      acc_w[i] += d * xh;
      acc_b[i] += d;
    }
  }
}

void layer_norm_backward(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2];
  const TensorRef &dx = c.out[0], &dw = c.out[1], &db = c.out[2];
  const float eps = static_cast<float>(c.attrs.f("eps"));
  const int64_t D = w.numel(), N = D ? x.numel() / D : 0;
  if (D == 0) return;
  dispatch_f32_bf16(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const unsigned nb = partial_blocks(c, N);
    Scratch part(2 * static_cast<size_t>(nb) * D * sizeof(float), stream_of(c));
    layer_norm_bwd_kernel<T><<<nb, row_threads(D), 0, stream_of(c)>>>(
        x.as<T>(), w.as<T>(), dy.as<T>(), dx.as<T>(), part.as<float>(), N, D, eps);
    check_launch("LayerNormBackward");
    sum_partials_kernel<T>
        <<<blocks_for(D, 256), 256, 0, stream_of(c)>>>(part.as<float>(), dw.as<T>(), nb, D);
    check_launch("LayerNormBackward");
    sum_partials_kernel<T><<<blocks_for(D, 256), 256, 0, stream_of(c)>>>(
        part.as<float>() + static_cast<int64_t>(nb) * D, db.as<T>(), nb, D);
    check_launch("LayerNormBackward");
  });
}

// ---- rope -------------------------------------------------------------------------------------

// The inverse frequencies travel by value in the launch parameters (2 KiB, under the 4 KiB
// limit), so no host-to-device copy is needed; rope_inv_freq computes them on the host.
constexpr int64_t kRopeMaxHalf = 512;
struct RopeFreqs {
  float f[kRopeMaxHalf];
};

// table [T, half] of (s cos a, s sin a), a = sign * t * inv_freq[i], computed in double and
// rounded to float like the cpu kernel's table (angles reach t ~ 1e4 rad, too big for fp32).
__global__ void rope_table_kernel(float2* __restrict__ table, int64_t T, int64_t half,
                                  RopeFreqs freqs, double scale, double sign) {
  const int64_t n = T * half;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = k / half, i = k % half;
    const double a = sign * static_cast<double>(t) * static_cast<double>(freqs.f[i]);
    double s, co;
    sincos(a, &s, &co);
    table[k] = make_float2(static_cast<float>(scale * co), static_cast<float>(scale * s));
  }
}

// x [B, T, H, D] -> y, rotate-half with the table; one thread per (row, i < D/2).
template <class T>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ y,
                            const float2* __restrict__ table, int64_t rows, int64_t Tn, int64_t H,
                            int64_t half) {
  const int64_t n = rows * half;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = k / half, i = k % half, t = (r / H) % Tn;
    const float2 cs = table[t * half + i];
    const int64_t base = r * 2 * half;
    const float a = to_float(x[base + i]), b = to_float(x[base + i + half]);
    y[base + i] = from_float<T>(a * cs.x - b * cs.y);
    y[base + i + half] = from_float<T>(b * cs.x + a * cs.y);
  }
}

void rope(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const RopeScaling scaling = rope_scaling_from_attrs(c.attrs);
  const double sign = c.attrs.i("inverse") ? -1.0 : 1.0;
  const int64_t B = x.shape[0], Tn = x.shape[1], H = x.shape[2], D = x.shape[3], half = D / 2;
  if (x.numel() == 0) return;
  SOLO_CHECK(half <= kRopeMaxHalf, "Rope on cuda: head dim ", D, " exceeds the supported ",
             2 * kRopeMaxHalf);
  RopeFreqs freqs{};
  const std::vector<float> inv_freq = rope_inv_freq(scaling, D, Tn);
  for (int64_t i = 0; i < half; ++i) freqs.f[i] = inv_freq[static_cast<size_t>(i)];
  dispatch_f32_bf16(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (half == 0) return;  // D = 0 handled above; D even by the op contract
    Scratch table(static_cast<size_t>(Tn * half) * sizeof(float2), stream_of(c));
    rope_table_kernel<<<blocks_for(Tn * half, 256), 256, 0, stream_of(c)>>>(
        table.as<float2>(), Tn, half, freqs, scaling.attention_factor, sign);
    check_launch("Rope");
    const int64_t rows = B * Tn * H;
    rope_kernel<T><<<blocks_for(rows * half, 256), 256, 0, stream_of(c)>>>(
        x.as<T>(), y.as<T>(), table.as<float2>(), rows, Tn, H, half);
    check_launch("Rope");
  });
}

// ---- cross entropy ----------------------------------------------------------------------------

__device__ __forceinline__ int64_t load_label(const void* labels, bool is64, int64_t n) {
  return is64 ? static_cast<const int64_t*>(labels)[n]
              : static_cast<int64_t>(static_cast<const int32_t*>(labels)[n]);
}

// A row counts when its label is not ignore_index and lies in [0, V). The cpu backend raises
// for a label outside [0, V); on the GPU such a row is treated as ignored (no host check, so
// the kernels stay asynchronous).
__device__ __forceinline__ bool label_counts(int64_t label, int64_t V, int64_t ignore) {
  return label != ignore && label >= 0 && label < V;
}

// logits [N, V], labels [N] -> row_loss [N] (logsumexp - logit[label], 0 if not counted) and
// row_valid [N]; one block per row, max and sum of exp in one online pass.
template <class T>
__global__ void cross_entropy_rows_kernel(const T* __restrict__ logits, const void* labels,
                                          bool labels64, double* __restrict__ row_loss,
                                          int* __restrict__ row_valid, int64_t V, int64_t ignore) {
  __shared__ float red_m[32], red_s[32];
  const int64_t n = blockIdx.x;
  const int64_t label = load_label(labels, labels64, n);
  if (!label_counts(label, V, ignore)) {  // uniform over the block
    if (threadIdx.x == 0) {
      row_loss[n] = 0.0;
      row_valid[n] = 0;
    }
    return;
  }
  const T* row = logits + n * V;
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) online_add(m, s, to_float(row[j]));
  block_online_merge(m, s, red_m, red_s);
  if (threadIdx.x == 0) {
    row_loss[n] = static_cast<double>(m) + log(static_cast<double>(s)) -
                  static_cast<double>(to_float(row[label]));
    row_valid[n] = 1;
  }
}

// row_loss, row_valid [N] -> loss [] = mean of the counted rows (NaN if none); one block,
// each thread sums a fixed strided subset, then a fixed tree: deterministic.
__global__ void cross_entropy_mean_kernel(const double* __restrict__ row_loss,
                                          const int* __restrict__ row_valid, float* loss,
                                          int64_t N) {
  __shared__ double red[32];
  double total = 0.0, count = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    total += row_loss[n];
    count += row_valid[n];
  }
  total = block_sum(total, red);
  count = block_sum(count, red);
  if (threadIdx.x == 0) *loss = count > 0 ? static_cast<float>(total / count) : NAN;
}

void cross_entropy(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &loss = c.out[0];
  const int64_t ignore = c.attrs.i("ignore_index");
  const int64_t N = logits.shape[0], V = logits.shape[1];
  SOLO_CHECK(labels.dtype == DType::I32 || labels.dtype == DType::I64,
             "CrossEntropy: labels must be i32 or i64 on cuda, got ", dtype_name(labels.dtype));
  dispatch_f32_bf16(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    Scratch rows(static_cast<size_t>(N) * (sizeof(double) + sizeof(int)), stream_of(c));
    double* row_loss = rows.as<double>();
    int* row_valid = reinterpret_cast<int*>(row_loss + N);
    if (N > 0) {
      cross_entropy_rows_kernel<T><<<static_cast<unsigned>(N), row_threads(V), 0, stream_of(c)>>>(
          logits.as<T>(), labels.data, labels.dtype == DType::I64, row_loss, row_valid, V, ignore);
      check_launch("CrossEntropy");
    }
    cross_entropy_mean_kernel<<<1, 1024, 0, stream_of(c)>>>(row_loss, row_valid, loss.as<float>(),
                                                            N);
    check_launch("CrossEntropy");
  });
}

// labels [N] -> *count = number of counted rows; one block.
__global__ void count_labels_kernel(const void* labels, bool labels64, int64_t N, int64_t V,
                                    int64_t ignore, int64_t* count) {
  __shared__ double red[32];
  double k = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x)
    k += label_counts(load_label(labels, labels64, n), V, ignore) ? 1.0 : 0.0;
  k = block_sum(k, red);
  if (threadIdx.x == 0) *count = static_cast<int64_t>(k);
}

// logits [N, V], labels [N], dloss [] -> dlogits [N, V] = (softmax - onehot) * dloss / count;
// rows not counted are zero. One block per row.
template <class T>
__global__ void cross_entropy_bwd_kernel(const T* __restrict__ logits, const void* labels,
                                         bool labels64, const float* __restrict__ dloss,
                                         const int64_t* __restrict__ count, T* __restrict__ dlogits,
                                         int64_t V, int64_t ignore) {
  __shared__ float red_m[32], red_s[32];
  const int64_t n = blockIdx.x;
  const int64_t label = load_label(labels, labels64, n);
  T* out = dlogits + n * V;
  if (!label_counts(label, V, ignore)) {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) out[j] = from_float<T>(0.f);
    return;
  }
  const T* row = logits + n * V;
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) online_add(m, s, to_float(row[j]));
  block_online_merge(m, s, red_m, red_s);
  const double scale = static_cast<double>(*dloss) / static_cast<double>(*count);  // count >= 1
  const float k = static_cast<float>(scale / static_cast<double>(s));
  const float one = static_cast<float>(scale);
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float p = expf(to_float(row[j]) - m) * k;
    out[j] = from_float<T>(j == label ? p - one : p);
  }
}

void cross_entropy_backward(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &dloss = c.in[2], &dlogits = c.out[0];
  const int64_t ignore = c.attrs.i("ignore_index");
  const int64_t N = logits.shape[0], V = logits.shape[1];
  SOLO_CHECK(labels.dtype == DType::I32 || labels.dtype == DType::I64,
             "CrossEntropyBackward: labels must be i32 or i64 on cuda, got ",
             dtype_name(labels.dtype));
  if (N == 0 || V == 0) return;
  dispatch_f32_bf16(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    SOLO_CHECK(dloss.dtype == DType::F32, "CrossEntropyBackward: dloss must be f32 on cuda");
    Scratch count(sizeof(int64_t), stream_of(c));
    const bool l64 = labels.dtype == DType::I64;
    count_labels_kernel<<<1, 1024, 0, stream_of(c)>>>(labels.data, l64, N, V, ignore,
                                                      count.as<int64_t>());
    check_launch("CrossEntropyBackward");
    cross_entropy_bwd_kernel<T><<<static_cast<unsigned>(N), row_threads(V), 0, stream_of(c)>>>(
        logits.as<T>(), labels.data, l64, dloss.as<float>(), count.as<int64_t>(), dlogits.as<T>(),
        V, ignore);
    check_launch("CrossEntropyBackward");
  });
}

}  // namespace

void register_cuda_nn_kernels(KernelTable& t) {
  t.set(OpKind::Softmax, softmax);
  t.set(OpKind::SoftmaxBackward, softmax_backward);
  t.set(OpKind::RmsNorm, rms_norm);
  t.set(OpKind::RmsNormBackward, rms_norm_backward);
  t.set(OpKind::LayerNorm, layer_norm);
  t.set(OpKind::LayerNormBackward, layer_norm_backward);
  t.set(OpKind::Rope, rope);
  t.set(OpKind::CrossEntropy, cross_entropy);
  t.set(OpKind::CrossEntropyBackward, cross_entropy_backward);
}

}  // namespace solo
