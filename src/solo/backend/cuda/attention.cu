// CUDA kernels of Attention and AttentionBackward, FlashAttention-2 style: one thread block per
// (b, head, tile of queries) loops over key tiles staged in shared memory (fp32), with an online
// softmax in fp32 registers; key tiles entirely above the causal diagonal (or before a sliding
// window) are skipped. Four threads share a query row (each holds a quarter of the scores and
// of the output columns), so a row's max and sum need two shuffles. The backward recomputes P
// from q, k and lse: one kernel per (b, h, query tile) for dq, one per (b, kv head, key tile)
// for dk and dv that loops over every query head of its group (no atomics: deterministic).
// Tiles: D <= 64 and D <= 128 use 64 x 64 tiles; D <= 256 uses 32 x 32 tiles (shared memory);
// the head dim is a run-time value below the template bound, so any D <= 256 works.
// With SOLO_CUDA_ATTENTION=mma, bf16 calls with D 64 or 128 go to the tensor-core kernels of
// attention_mma.cu instead (same contract; the delta precompute and scratch are shared), except
// sliding-window calls, which stay here.
#include <cmath>
#include <cstdint>

#include "solo/backend/cuda/attention_common.cuh"
#include "solo/backend/cuda/attention_mma.h"
#include "solo/backend/cuda/cuda_util.cuh"

namespace solo {
namespace {

using cuda::check_launch;
using cuda::dispatch_f32_bf16;
using cuda::from_float;
using cuda::stream_of;
using cuda::to_float;
using cuda::attn::causal_hidden;
using cuda::attn::kNoMask;
using cuda::attn::load_key_ok;
using cuda::attn::mask_at;
using cuda::attn::mask_kind;
using cuda::attn::Params;
using cuda::attn::row_of;

constexpr int kRowThreads = 4;  // threads per query row (fwd, dq) or key row (dk/dv)

// Stages rows [r0, r0 + rows) of x [B, L, H, D] at (b, ., h) as float into s [rows][ld]
// (zeros past L).
template <class T>
__device__ void load_tile(const T* __restrict__ x, float* s, int ld, int rows, int r0, int b, int h,
                          int L, int H, int D) {
  for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
    const int r = idx / D, d = idx % D, l = r0 + r;
    s[r * ld + d] = l < L ? to_float(x[row_of(b, l, h, L, H, D) + d]) : 0.f;
  }
}

__device__ __forceinline__ float dot(const float* a, const float* b, int D) {
  float acc = 0.f;
#pragma unroll 8
  for (int d = 0; d < D; ++d) acc = fmaf(a[d], b[d], acc);
  return acc;
}

// A row's sum and max over its kRowThreads lanes.
static_assert(kRowThreads == 4, "row reductions are quad shuffles");
__device__ __forceinline__ float row_sum(float v) {
  return cuda::attn::quad_sum(v);
}
__device__ __forceinline__ float row_max(float v) {
  return cuda::attn::quad_max(v);
}

// ---- forward ----------------------------------------------------------------------------------

template <int BQ, int BK>
size_t fwd_smem(int D) {
  const size_t ld = static_cast<size_t>(D) + 1;
  return (BQ * ld + 2 * BK * ld + BQ * (BK + 1) + BK) * sizeof(float);
}

// q [B, T, Hq, D], k, v [B, S, Hkv, D] -> out [B, T, Hq, D], lse [B, Hq, T].
// Grid (ceil(T / BQ), Hq, B), BQ * 4 threads: thread (r, g) owns query r of the tile, keys
// g, g + 4, ... of each key tile and output columns g, g + 4, ...
template <class T, int DMAX, int BQ, int BK>
__global__ void __launch_bounds__(BQ* kRowThreads)
    attention_fwd_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                         T* __restrict__ out, float* __restrict__ lse, Params p) {
  extern __shared__ float smem[];
  const int D = p.D, ld = D + 1;
  float* sQ = smem;                 // [BQ][ld]
  float* sK = sQ + BQ * ld;         // [BK][ld]
  float* sV = sK + BK * ld;         // [BK][ld]
  float* sP = sV + BK * ld;         // [BQ][BK + 1]
  float* sOk = sP + BQ * (BK + 1);  // [BK]
  const int r = threadIdx.x / kRowThreads, g = threadIdx.x % kRowThreads;
  const int q0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
  const int t = q0 + r;
  const bool row_ok = t < p.T;
  load_tile(q, sQ, ld, BQ, q0, b, h, p.T, p.Hq, D);

  float o[DMAX / kRowThreads];
#pragma unroll
  for (int dd = 0; dd < DMAX / kRowThreads; ++dd) o[dd] = 0.f;
  float m = -INFINITY, l = 0.f;
  const int kend = p.causal ? min(p.S, q0 + BQ) : p.S;  // later key tiles are all above diagonal
  // Key tiles wholly before the first query's window are hidden from every row of the tile.
  const int kbegin = p.window > 0 ? max(0, q0 - p.window + 1) / BK * BK : 0;
  for (int k0 = kbegin; k0 < kend; k0 += BK) {
    __syncthreads();  // the previous tile is no longer read (and sQ is complete)
    load_tile(k, sK, ld, BK, k0, b, hk, p.S, p.Hkv, D);
    load_tile(v, sV, ld, BK, k0, b, hk, p.S, p.Hkv, D);
    load_key_ok(sOk, BK, k0, b, p);
    __syncthreads();
    float sc[BK / kRowThreads];
    float mt = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < BK / kRowThreads; ++jj) {
      const int j = g + kRowThreads * jj, key = k0 + j;
      const bool ok = row_ok && sOk[j] != 0.f && !causal_hidden(p, t, key);
      sc[jj] = ok ? dot(sQ + r * ld, sK + j * ld, D) * p.scale : -INFINITY;
      mt = fmaxf(mt, sc[jj]);
    }
    const float mn = fmaxf(m, row_max(mt));
    float alpha = 1.f, rs = 0.f;
    if (mn != -INFINITY) alpha = expf(m - mn);  // m = -inf gives 0
#pragma unroll
    for (int jj = 0; jj < BK / kRowThreads; ++jj) {
      const float e = mn == -INFINITY ? 0.f : expf(sc[jj] - mn);
      sP[r * (BK + 1) + g + kRowThreads * jj] = e;
      rs += e;
    }
    l = l * alpha + row_sum(rs);
    m = mn;
    __syncwarp();  // sP row r is written and read only by the 4 lanes of row r
#pragma unroll
    for (int dd = 0; dd < DMAX / kRowThreads; ++dd) o[dd] *= alpha;
    for (int j = 0; j < BK; ++j) {
      const float pj = sP[r * (BK + 1) + j];
      const float* vj = sV + j * ld;
#pragma unroll
      for (int dd = 0; dd < DMAX / kRowThreads; ++dd) {
        const int d = g + kRowThreads * dd;
        if (d < D) o[dd] = fmaf(pj, vj[d], o[dd]);
      }
    }
  }
  if (!row_ok) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;  // a query that sees no key outputs zeros
  const int64_t base = row_of(b, t, h, p.T, p.Hq, D);
#pragma unroll
  for (int dd = 0; dd < DMAX / kRowThreads; ++dd) {
    const int d = g + kRowThreads * dd;
    if (d < D) out[base + d] = from_float<T>(o[dd] * inv);
  }
  if (g == 0)
    lse[(static_cast<int64_t>(b) * p.Hq + h) * p.T + t] = l > 0.f ? m + logf(l) : -INFINITY;
}

template <class T, int DMAX, int BQ, int BK>
void launch_fwd(const KernelCall& c, const Params& p) {
  auto kernel = attention_fwd_kernel<T, DMAX, BQ, BK>;
  const size_t smem = fwd_smem<BQ, BK>(p.D);
  SOLO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid((p.T + BQ - 1) / BQ, p.Hq, p.B);
  kernel<<<grid, BQ * kRowThreads, smem, stream_of(c)>>>(
      c.in[0].as<T>(), c.in[1].as<T>(), c.in[2].as<T>(), c.out[0].as<T>(), c.out[1].as<float>(), p);
  check_launch("Attention");
}

// Sizes and attrs of a call whose q, k are in[0], in[1] and whose mask (if any) is in[mask_at].
Params params_of(const KernelCall& c, size_t mask_index) {
  const TensorRef &q = c.in[0], &k = c.in[1];
  Params p;
  p.B = static_cast<int>(q.shape[0]);
  p.T = static_cast<int>(q.shape[1]);
  p.Hq = static_cast<int>(q.shape[2]);
  p.D = static_cast<int>(q.shape[3]);
  p.S = static_cast<int>(k.shape[1]);
  p.Hkv = static_cast<int>(k.shape[2]);
  p.group = p.Hkv > 0 ? p.Hq / p.Hkv : 1;
  p.scale = static_cast<float>(c.attrs.f("scale"));
  p.causal = c.attrs.i("causal") != 0;
  // A window of at least T hides nothing (and keeps the int in range).
  const int64_t window = p.causal ? c.attrs.i_or("window", 0) : 0;
  p.window = window > 0 && window < q.shape[1] ? static_cast<int>(window) : 0;
  const bool has_mask = c.in.size() > mask_index;
  p.mask = has_mask ? c.in[mask_index].data : nullptr;
  p.mask_kind = has_mask ? mask_kind(c.in[mask_index].dtype) : kNoMask;
  SOLO_CHECK(p.D <= 256, op_name(c.op), ": head dim ", p.D,
             " is not supported on cuda (at most 256)");
  SOLO_CHECK(p.B <= 65535 && p.Hq <= 65535, op_name(c.op), ": batch ", p.B, " or heads ", p.Hq,
             " too large for the cuda grid");
  return p;
}

// Calls f.template operator()<DMAX, BQ, BK>() for the head dim.
template <class F>
void dispatch_dim(int D, F&& f) {
  if (D <= 64)
    f.template operator()<64, 64, 64>();
  else if (D <= 128)
    f.template operator()<128, 64, 64>();
  else
    f.template operator()<256, 32, 32>();
}

// The tensor-core kernels (attention_mma.cu) when the backend selects them and they cover the
// call (bf16, D 64 or 128); otherwise these.
bool use_mma(const KernelCall& c, const Params& p) {
  return cuda::context_of(c).attention_mma && cuda::attention_mma_supports(c, p);
}

void attention(const KernelCall& c) {
  const Params p = params_of(c, 3);
  if (static_cast<int64_t>(p.B) * p.T * p.Hq == 0) return;
  if (use_mma(c, p)) return cuda::attention_mma_forward(c, p);
  dispatch_f32_bf16(c.op, c.in[0].dtype, [&](auto zero) {
    using T = decltype(zero);
    dispatch_dim(p.D, [&]<int DMAX, int BQ, int BK>() { launch_fwd<T, DMAX, BQ, BK>(c, p); });
  });
}

// ---- backward ---------------------------------------------------------------------------------

// out, dout [B, T, Hq, D] -> delta [B, Hq, T] = rowsum(dout * out); one warp per row.
template <class T>
__global__ void attention_delta_kernel(const T* __restrict__ out, const T* __restrict__ dout,
                                       float* __restrict__ delta, int64_t rows, int T_, int Hq,
                                       int D) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
       r < rows; r += warps) {  // r = (b * T + t) * Hq + h
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += to_float(out[r * D + d]) * to_float(dout[r * D + d]);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) {
      const int64_t h = r % Hq, t = (r / Hq) % T_, b = r / (static_cast<int64_t>(Hq) * T_);
      delta[(b * Hq + h) * T_ + t] = s;
    }
  }
}

template <int BQ, int BK>
size_t dq_smem(int D) {
  const size_t ld = static_cast<size_t>(D) + 1;
  return (2 * BQ * ld + 2 * BK * ld + BQ * (BK + 1) + BK) * sizeof(float);
}

// dq [B, T, Hq, D] = scale * sum_j dS_ij k_j with dS = P * (dP - delta), P = exp(s - lse),
// dP = dout . v. Grid (ceil(T / BQ), Hq, B); thread layout as in the forward.
template <class T, int DMAX, int BQ, int BK>
__global__ void __launch_bounds__(BQ* kRowThreads)
    attention_dq_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                        const float* __restrict__ lse, const T* __restrict__ dout,
                        const float* __restrict__ delta, T* __restrict__ dq, Params p) {
  extern __shared__ float smem[];
  const int D = p.D, ld = D + 1;
  float* sQ = smem;                 // [BQ][ld]
  float* sDO = sQ + BQ * ld;        // [BQ][ld]
  float* sK = sDO + BQ * ld;        // [BK][ld]
  float* sV = sK + BK * ld;         // [BK][ld]
  float* sS = sV + BK * ld;         // [BQ][BK + 1] dS
  float* sOk = sS + BQ * (BK + 1);  // [BK]
  const int r = threadIdx.x / kRowThreads, g = threadIdx.x % kRowThreads;
  const int q0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
  const int t = q0 + r;
  const int64_t li = (static_cast<int64_t>(b) * p.Hq + h) * p.T + t;
  const float row_lse = t < p.T ? lse[li] : -INFINITY;
  const float row_delta = t < p.T ? delta[li] : 0.f;
  const bool live = row_lse != -INFINITY;  // false: no visible key, zero gradient
  load_tile(q, sQ, ld, BQ, q0, b, h, p.T, p.Hq, D);
  load_tile(dout, sDO, ld, BQ, q0, b, h, p.T, p.Hq, D);

  float acc[DMAX / kRowThreads];
#pragma unroll
  for (int dd = 0; dd < DMAX / kRowThreads; ++dd) acc[dd] = 0.f;
  const int kend = p.causal ? min(p.S, q0 + BQ) : p.S;
  const int kbegin = p.window > 0 ? max(0, q0 - p.window + 1) / BK * BK : 0;
  for (int k0 = kbegin; k0 < kend; k0 += BK) {
    __syncthreads();
    load_tile(k, sK, ld, BK, k0, b, hk, p.S, p.Hkv, D);
    load_tile(v, sV, ld, BK, k0, b, hk, p.S, p.Hkv, D);
    load_key_ok(sOk, BK, k0, b, p);
    __syncthreads();
#pragma unroll
    for (int jj = 0; jj < BK / kRowThreads; ++jj) {
      const int j = g + kRowThreads * jj, key = k0 + j;
      float ds = 0.f;
      if (live && sOk[j] != 0.f && !causal_hidden(p, t, key)) {
        const float pr = expf(dot(sQ + r * ld, sK + j * ld, D) * p.scale - row_lse);
        ds = pr * (dot(sDO + r * ld, sV + j * ld, D) - row_delta);
      }
      sS[r * (BK + 1) + j] = ds;
    }
    __syncwarp();
    for (int j = 0; j < BK; ++j) {
      const float ds = sS[r * (BK + 1) + j];
      const float* kj = sK + j * ld;
#pragma unroll
      for (int dd = 0; dd < DMAX / kRowThreads; ++dd) {
        const int d = g + kRowThreads * dd;
        if (d < D) acc[dd] = fmaf(ds, kj[d], acc[dd]);
      }
    }
  }
  if (t >= p.T) return;
  const int64_t base = row_of(b, t, h, p.T, p.Hq, D);
#pragma unroll
  for (int dd = 0; dd < DMAX / kRowThreads; ++dd) {
    const int d = g + kRowThreads * dd;
    if (d < D) dq[base + d] = from_float<T>(acc[dd] * p.scale);
  }
}

template <int BQ, int BK>
size_t dkv_smem(int D) {
  const size_t ld = static_cast<size_t>(D) + 1;
  return (2 * BK * ld + 2 * BQ * ld + 2 * BK * (BQ + 1) + 2 * BQ + BK) * sizeof(float);
}

// dk, dv [B, S, Hkv, D]: for the key tile, over every query head h of the group and every
// query tile, dv_j += sum_i P_ij dout_i and dk_j += scale * sum_i dS_ij q_i.
// Grid (ceil(S / BK), Hkv, B), BK * 4 threads: thread (j, g) owns key j of the tile, queries
// g, g + 4, ... of each query tile and columns g, g + 4, ...
template <class T, int DMAX, int BQ, int BK>
__global__ void __launch_bounds__(BK* kRowThreads)
    attention_dkv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                         const float* __restrict__ lse, const T* __restrict__ dout,
                         const float* __restrict__ delta, T* __restrict__ dk, T* __restrict__ dv,
                         Params p) {
  extern __shared__ float smem[];
  const int D = p.D, ld = D + 1;
  float* sK = smem;                  // [BK][ld]
  float* sV = sK + BK * ld;          // [BK][ld]
  float* sQ = sV + BK * ld;          // [BQ][ld]
  float* sDO = sQ + BQ * ld;         // [BQ][ld]
  float* sP = sDO + BQ * ld;         // [BK][BQ + 1] P^T
  float* sS = sP + BK * (BQ + 1);    // [BK][BQ + 1] dS^T
  float* sLse = sS + BK * (BQ + 1);  // [BQ]
  float* sDelta = sLse + BQ;         // [BQ]
  float* sOk = sDelta + BQ;          // [BK]
  const int j = threadIdx.x / kRowThreads, g = threadIdx.x % kRowThreads;
  const int k0 = blockIdx.x * BK, hk = blockIdx.y, b = blockIdx.z;
  const int key = k0 + j;
  load_tile(k, sK, ld, BK, k0, b, hk, p.S, p.Hkv, D);
  load_tile(v, sV, ld, BK, k0, b, hk, p.S, p.Hkv, D);
  load_key_ok(sOk, BK, k0, b, p);

  float ak[DMAX / kRowThreads], av[DMAX / kRowThreads];
#pragma unroll
  for (int dd = 0; dd < DMAX / kRowThreads; ++dd) ak[dd] = av[dd] = 0.f;
  // Causal: queries before k0 see none of these keys (BQ divides k0 only if BQ <= BK; round down).
  const int qstart = p.causal ? (k0 / BQ) * BQ : 0;
  // A window W hides the tile from queries at or past its last key + W.
  const int qend = p.window > 0 ? min(p.T, k0 + BK - 1 + p.window) : p.T;
  for (int hh = 0; hh < p.group; ++hh) {
    const int h = hk * p.group + hh;
    for (int q0 = qstart; q0 < qend; q0 += BQ) {
      __syncthreads();  // previous query tile no longer read (and the key tile is complete)
      load_tile(q, sQ, ld, BQ, q0, b, h, p.T, p.Hq, D);
      load_tile(dout, sDO, ld, BQ, q0, b, h, p.T, p.Hq, D);
      for (int i = threadIdx.x; i < BQ; i += blockDim.x) {
        const int t = q0 + i;
        const int64_t li = (static_cast<int64_t>(b) * p.Hq + h) * p.T + t;
        sLse[i] = t < p.T ? lse[li] : -INFINITY;
        sDelta[i] = t < p.T ? delta[li] : 0.f;
      }
      __syncthreads();
      const bool key_ok = sOk[j] != 0.f;
#pragma unroll
      for (int ii = 0; ii < BQ / kRowThreads; ++ii) {
        const int i = g + kRowThreads * ii, t = q0 + i;
        float pr = 0.f, ds = 0.f;
        if (key_ok && sLse[i] != -INFINITY && !causal_hidden(p, t, key)) {
          pr = expf(dot(sQ + i * ld, sK + j * ld, D) * p.scale - sLse[i]);
          ds = pr * (dot(sDO + i * ld, sV + j * ld, D) - sDelta[i]);
        }
        sP[j * (BQ + 1) + i] = pr;
        sS[j * (BQ + 1) + i] = ds;
      }
      __syncwarp();  // row j of sP / sS belongs to the 4 lanes of key j
      for (int i = 0; i < BQ; ++i) {
        const float pr = sP[j * (BQ + 1) + i], ds = sS[j * (BQ + 1) + i];
        const float *qi = sQ + i * ld, *doi = sDO + i * ld;
#pragma unroll
        for (int dd = 0; dd < DMAX / kRowThreads; ++dd) {
          const int d = g + kRowThreads * dd;
          if (d < D) {
            av[dd] = fmaf(pr, doi[d], av[dd]);
            ak[dd] = fmaf(ds, qi[d], ak[dd]);
          }
        }
      }
    }
  }
  if (key >= p.S) return;
  const int64_t base = row_of(b, key, hk, p.S, p.Hkv, D);
#pragma unroll
  for (int dd = 0; dd < DMAX / kRowThreads; ++dd) {
    const int d = g + kRowThreads * dd;
    if (d < D) {
      dk[base + d] = from_float<T>(ak[dd] * p.scale);
      dv[base + d] = from_float<T>(av[dd]);
    }
  }
}

// Scratch device memory ordered on the call's stream.
struct Scratch {
  void* ptr = nullptr;
  cudaStream_t s;
  Scratch(size_t bytes, cudaStream_t stream) : s(stream) {
    SOLO_CUDA_CHECK(cudaMallocAsync(&ptr, bytes ? bytes : 1, s));
  }
  ~Scratch() { cudaFreeAsync(ptr, s); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Inputs (q, k, v, out, lse, dout[, key_mask]) -> dq, dk, dv.
template <class T, int DMAX, int BQ, int BK>
void launch_bwd(const KernelCall& c, const Params& p, float* delta) {
  const TensorRef &q = c.in[0], &k = c.in[1], &v = c.in[2], &lse = c.in[4], &dout = c.in[5];
  if (static_cast<int64_t>(p.B) * p.T * p.Hq > 0) {
    auto kq = attention_dq_kernel<T, DMAX, BQ, BK>;
    const size_t smem = dq_smem<BQ, BK>(p.D);
    SOLO_CUDA_CHECK(
        cudaFuncSetAttribute(kq, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const dim3 grid((p.T + BQ - 1) / BQ, p.Hq, p.B);
    kq<<<grid, BQ * kRowThreads, smem, stream_of(c)>>>(
        q.as<T>(), k.as<T>(), v.as<T>(), lse.as<float>(), dout.as<T>(), delta, c.out[0].as<T>(), p);
    check_launch("AttentionBackward");
  }
  if (static_cast<int64_t>(p.B) * p.S * p.Hkv > 0) {
    auto kkv = attention_dkv_kernel<T, DMAX, BQ, BK>;
    const size_t smem = dkv_smem<BQ, BK>(p.D);
    SOLO_CUDA_CHECK(
        cudaFuncSetAttribute(kkv, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const dim3 grid((p.S + BK - 1) / BK, p.Hkv, p.B);
    kkv<<<grid, BK * kRowThreads, smem, stream_of(c)>>>(q.as<T>(), k.as<T>(), v.as<T>(),
                                                        lse.as<float>(), dout.as<T>(), delta,
                                                        c.out[1].as<T>(), c.out[2].as<T>(), p);
    check_launch("AttentionBackward");
  }
}

void attention_backward(const KernelCall& c) {
  const Params p = params_of(c, 6);
  if (static_cast<int64_t>(p.D) * p.B == 0) return;
  const bool mma = use_mma(c, p);
  dispatch_f32_bf16(c.op, c.in[0].dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t rows = static_cast<int64_t>(p.B) * p.T * p.Hq;
    Scratch delta(static_cast<size_t>(rows) * sizeof(float), stream_of(c));
    float* dp = static_cast<float*>(delta.ptr);
    if (rows > 0) {
      attention_delta_kernel<T><<<cuda::blocks_for(rows, 8), 256, 0, stream_of(c)>>>(
          c.in[3].as<T>(), c.in[5].as<T>(), dp, rows, p.T, p.Hq, p.D);
      check_launch("AttentionBackward");
    }
    if (mma) return cuda::attention_mma_backward(c, p, dp);
    dispatch_dim(p.D, [&]<int DMAX, int BQ, int BK>() { launch_bwd<T, DMAX, BQ, BK>(c, p, dp); });
  });
}

}  // namespace

void register_cuda_attention_kernels(KernelTable& t) {
  t.set(OpKind::Attention, attention);
  t.set(OpKind::AttentionBackward, attention_backward);
}

}  // namespace solo
