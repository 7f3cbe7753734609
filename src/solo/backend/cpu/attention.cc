// Flash-style attention on the CPU: queries and keys are processed in tiles and the softmax
// is computed online (running max and sum), so no T x S score matrix is ever materialised;
// memory beyond the outputs is a few tiles per thread. The backward recomputes the
// probabilities tile by tile from q, k and the saved lse (FlashAttention-2, Dao 2023).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/kernel_util.h"

namespace solo {
namespace {

using kernels::dispatch_float;

constexpr int64_t kBr = 32;  // query rows per tile
constexpr int64_t kBc = 64;  // keys per tile (a K^T tile of D x kBc stays in L1/L2)

// q [B, T, Hq, D], k/v [B, S, Hkv, D]; row strides in elements of one head's D-vector.
struct Dims {
  int64_t B, T, S, Hq, Hkv, D, group;
  Dims(const TensorRef& q, const TensorRef& k)
      : B(q.shape[0]),
        T(q.shape[1]),
        S(k.shape[1]),
        Hq(q.shape[2]),
        Hkv(k.shape[2]),
        D(q.shape[3]),
        group(q.shape[2] / k.shape[2]) {}
  int64_t qi(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * Hq + h) * D; }
  int64_t ki(int64_t b, int64_t s, int64_t h) const { return ((b * S + s) * Hkv + h) * D; }
  int64_t ldq() const { return Hq * D; }
  int64_t ldk() const { return Hkv * D; }
};

// key_mask [B, S] of any dtype -> keep [B * S] bytes (1 = attend); empty when absent.
std::vector<uint8_t> read_key_mask(const KernelCall& c, size_t n_inputs_without_mask,
                                   const Dims& d) {
  std::vector<uint8_t> keep;
  if (c.in.size() <= n_inputs_without_mask) return keep;
  keep.resize(static_cast<size_t>(d.B * d.S));
  for (int64_t i = 0; i < d.B * d.S; ++i)
    keep[static_cast<size_t>(i)] = kernels::read_truth(c.in.back(), i);
  return keep;
}

bool any_kept(const std::vector<uint8_t>& keep, int64_t from, int64_t n) {
  if (keep.empty()) return true;
  for (int64_t j = 0; j < n; ++j)
    if (keep[static_cast<size_t>(from + j)]) return true;
  return false;
}

// e^x for float x <= 88, vectorisable: std::exp is a libm call per element, which made it the
// largest cost of the forward. Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, a degree-7
// polynomial for e^r, 2^n from the exponent bits; about 2 ulp. x < -87 (including -inf, the
// masked scores) gives exactly 0; NaN stays NaN.
inline float exp_fast(float x) {
  const float xc = x > -87.0f ? x : -87.0f;
  // n = nearest integer to x / ln2, by the 1.5 * 2^23 trick (std::floor blocks vectorising).
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float e = p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return x != x ? x : (x < -87.0f ? 0.0f : e);
}
// f64 runs gradient checks, not training: plain std::exp.
inline double exp_fast(double x) {
  return std::exp(x);
}

// Number of keys of the tile [j0, j0 + nc) that query t may see under the causal limit.
int64_t causal_end(bool causal, int64_t t, int64_t j0, int64_t nc) {
  return causal ? std::clamp<int64_t>(t - j0 + 1, 0, nc) : nc;
}

// First key of the tile [j0, j0 + nc) that query t may see under a sliding window W > 0
// (keys t - W < s <= t); 0 without one.
int64_t window_begin(int64_t window, int64_t t, int64_t j0, int64_t nc) {
  return window > 0 ? std::clamp<int64_t>(t - window + 1 - j0, 0, nc) : 0;
}

// kt [D, kBc] = x[j0 : j0 + nc] transposed, x rows of D elements at stride ld. Transposing
// once per tile makes the score loops stream along keys, which vectorises without reductions.
template <class T>
void load_transposed(const T* x, int64_t ld, int64_t j0, int64_t nc, int64_t D, T* kt) {
  for (int64_t j = 0; j < nc; ++j) {
    const T* row = x + (j0 + j) * ld;
    for (int64_t e = 0; e < D; ++e) kt[e * kBc + j] = row[e];
  }
}

// Register block of gemm_acc: kGemmRows rows x two vectors, 16 accumulators with AVX-512's 32
// vector registers, 8 with AVX2's 16 (leaving room for the loads, no spills).
#ifdef __AVX512F__
constexpr int64_t kVectorBytes = 64, kGemmRows = 8;
#else
constexpr int64_t kVectorBytes = 32, kGemmRows = 4;
#endif

// c [M, N] (row stride ldc) += alpha * a [M, K] (lda) @ b [K, N] (ldb), all row-major.
// Register-blocked: a kR x kW block of c stays in vector registers while K streams by, so
// each loaded row of b feeds kR FMAs (a plain row-at-a-time loop is load/store bound).
template <class T>
void gemm_acc(int64_t M, int64_t N, int64_t K, T alpha, const T* a, int64_t lda, const T* b,
              int64_t ldb, T* c, int64_t ldc) {
  constexpr int64_t kR = kGemmRows, kW = 2 * kVectorBytes / sizeof(T);
  for (int64_t i0 = 0; i0 < M; i0 += kR) {
    const int64_t rows = std::min(kR, M - i0);
    for (int64_t j0 = 0; j0 < N; j0 += kW) {
      const int64_t cols = std::min(kW, N - j0);
      T acc[kR][kW] = {};
      if (rows == kR && cols == kW) {  // full block: constant bounds the compiler unrolls
        for (int64_t k = 0; k < K; ++k) {
          const T* bk = b + k * ldb + j0;
          for (int64_t r = 0; r < kR; ++r) {
            const T ar = a[(i0 + r) * lda + k];
#pragma omp simd
            for (int64_t j = 0; j < kW; ++j) acc[r][j] += ar * bk[j];
          }
        }
      } else {
        for (int64_t k = 0; k < K; ++k) {
          const T* bk = b + k * ldb + j0;
          for (int64_t r = 0; r < rows; ++r) {
            const T ar = a[(i0 + r) * lda + k];
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) acc[r][j] += ar * bk[j];
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        T* crow = c + (i0 + r) * ldc + j0;
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) crow[j] += alpha * acc[r][j];
      }
    }
  }
}

// s [nr, kBc] = alpha * a [nr rows of D at stride lda] @ kt [D, kBc], first nc keys only.
template <class T>
void scores(const T* a, int64_t lda, int64_t nr, const T* kt, int64_t nc, int64_t D, T alpha,
            T* s) {
  for (int64_t i = 0; i < nr; ++i) std::fill(s + i * kBc, s + i * kBc + nc, T(0));
  gemm_acc(nr, nc, D, alpha, a, lda, kt, kBc, s, kBc);
}

// xt [nc, kBr] = x [nr, kBc] transposed (first nr rows, nc columns).
template <class T>
void transpose_tile(const T* x, int64_t nr, int64_t nc, T* xt) {
  for (int64_t i = 0; i < nr; ++i)
    for (int64_t j = 0; j < nc; ++j) xt[j * kBr + i] = x[i * kBc + j];
}

// q [B, T, Hq, D], k [B, S, Hkv, D], v [B, S, Hkv, D] (, key_mask [B, S])
//   -> out [B, T, Hq, D], lse [B, Hq, T]
// One task per (batch, head, query tile); tasks are independent, so no synchronisation.
// Key tiles wholly outside the tile's causal (and sliding-window) band are never visited.
template <class T>
void attention_forward(const KernelCall& c) {
  const Dims d(c.in[0], c.in[1]);
  const T* q = c.in[0].as<T>();
  const T* k = c.in[1].as<T>();
  const T* v = c.in[2].as<T>();
  T* out = c.out[0].as<T>();
  T* lse = c.out[1].as<T>();  // same dtype as q (the builder makes it f64 only for f64)
  const T scale = static_cast<T>(c.attrs.f("scale"));
  const bool causal = c.attrs.i("causal") != 0;
  const int64_t window = causal ? c.attrs.i_or("window", 0) : 0;
  const std::vector<uint8_t> keep = read_key_mask(c, 3, d);
  const int64_t n_qtiles = (d.T + kBr - 1) / kBr, n_tasks = d.B * d.Hq * n_qtiles;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();

#pragma omp parallel
  {
    std::vector<T> kt(static_cast<size_t>(d.D * kBc)), s(static_cast<size_t>(kBr * kBc));
    std::vector<T> acc(static_cast<size_t>(kBr * d.D)), m(kBr), l(kBr);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int64_t b = task / (d.Hq * n_qtiles), h = task / n_qtiles % d.Hq;
      const int64_t t0 = task % n_qtiles * kBr, nr = std::min(kBr, d.T - t0);
      const int64_t hk = h / d.group;
      const T* qt = q + d.qi(b, t0, h);
      const T* kb = k + d.ki(b, 0, hk);
      const T* vb = v + d.ki(b, 0, hk);
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(m.begin(), m.end(), kNegInf);
      std::fill(l.begin(), l.end(), T(0));
      // Causal: keys past the tile's last query are invisible to all its rows; skip them. A
      // window also hides the keys before the first query's window.
      const int64_t kend = causal ? std::min(d.S, t0 + nr) : d.S;
      const int64_t kbegin = window > 0 ? std::max<int64_t>(0, t0 - window + 1) : 0;
      for (int64_t j0 = kbegin; j0 < kend; j0 += kBc) {
        const int64_t nc = std::min(kBc, kend - j0);
        if (!any_kept(keep, b * d.S + j0, nc)) continue;
        load_transposed(kb, d.ldk(), j0, nc, d.D, kt.data());
        scores(qt, d.ldq(), nr, kt.data(), nc, d.D, scale, s.data());
        for (int64_t i = 0; i < nr; ++i) {
          T* srow = s.data() + i * kBc;
          const int64_t jend = causal_end(causal, t0 + i, j0, nc);
          const int64_t jbeg = window_begin(window, t0 + i, j0, nc);
          for (int64_t j = 0; j < jbeg; ++j) srow[j] = kNegInf;
          for (int64_t j = jend; j < nc; ++j) srow[j] = kNegInf;
          if (!keep.empty())
            for (int64_t j = jbeg; j < jend; ++j)
              if (!keep[static_cast<size_t>(b * d.S + j0 + j)]) srow[j] = kNegInf;
          T mx = m[i];
#pragma omp simd reduction(max : mx)
          for (int64_t j = 0; j < nc; ++j) mx = std::max(mx, srow[j]);
          if (mx == kNegInf) {  // no visible key yet: the row stays empty
            std::fill(srow, srow + nc, T(0));
            continue;
          }
          // Online softmax: rescale what was accumulated under the old max.
          const T corr = std::exp(m[i] - mx);
          T sum = 0;
#pragma omp simd
          for (int64_t j = 0; j < nc; ++j) srow[j] = exp_fast(srow[j] - mx);
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < nc; ++j) sum += srow[j];
          l[i] = l[i] * corr + sum;
          m[i] = mx;
          T* arow = acc.data() + i * d.D;
#pragma omp simd
          for (int64_t e = 0; e < d.D; ++e) arow[e] *= corr;
        }
        // acc [nr, D] += p [nr, nc] @ v [nc, D]
        gemm_acc(nr, d.D, nc, T(1), s.data(), kBc, vb + j0 * d.ldk(), d.ldk(), acc.data(), d.D);
      }
      for (int64_t i = 0; i < nr; ++i) {
        const bool any = l[i] > T(0);
        const T inv = any ? T(1) / l[i] : T(0);  // no visible key: zeros, lse = -inf
        T* orow = out + d.qi(b, t0 + i, h);
        const T* arow = acc.data() + i * d.D;
        for (int64_t e = 0; e < d.D; ++e) orow[e] = arow[e] * inv;
        lse[(b * d.Hq + h) * d.T + t0 + i] = any ? m[i] + std::log(l[i]) : kNegInf;
      }
    }
  }
}

// Inputs (q, k, v, out, lse, dout[, key_mask]) -> dq [B, T, Hq, D], dk, dv [B, S, Hkv, D].
// One task per (batch, kv head): it owns dk/dv of that head and dq of the query heads that
// read it, so nothing is shared between threads (parallelism is B * Hkv tasks). Per key tile, for
// each query tile:
//   P = exp(q k^T scale - lse), dP = dO v^T, dS = P (dP - Delta), Delta = rowsum(dO * O),
//   dV += P^T dO, dK += dS^T q scale, dQ += dS k scale.
template <class T>
void attention_backward(const KernelCall& c) {
  const Dims d(c.in[0], c.in[1]);
  const T* q = c.in[0].as<T>();
  const T* k = c.in[1].as<T>();
  const T* v = c.in[2].as<T>();
  const T* o = c.in[3].as<T>();
  const T* lse = c.in[4].as<T>();
  const T* dout = c.in[5].as<T>();
  T* dq = c.out[0].as<T>();
  T* dk = c.out[1].as<T>();
  T* dv = c.out[2].as<T>();
  const T scale = static_cast<T>(c.attrs.f("scale"));
  const bool causal = c.attrs.i("causal") != 0;
  const int64_t window = causal ? c.attrs.i_or("window", 0) : 0;
  const std::vector<uint8_t> keep = read_key_mask(c, 6, d);
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();

#pragma omp parallel
  {
    std::vector<T> kt(static_cast<size_t>(d.D * kBc)), vt(kt.size());
    std::vector<T> p(static_cast<size_t>(kBr * kBc)), ds(p.size()), pt(p.size()), dst(p.size());
    std::vector<T> dk_acc(static_cast<size_t>(kBc * d.D)), dv_acc(dk_acc.size());
    std::vector<T> delta(static_cast<size_t>(d.group * d.T));
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < d.B * d.Hkv; ++task) {
      const int64_t b = task / d.Hkv, hk = task % d.Hkv, h0 = hk * d.group;
      const T* kb = k + d.ki(b, 0, hk);
      const T* vb = v + d.ki(b, 0, hk);
      for (int64_t g = 0; g < d.group; ++g)
        for (int64_t t = 0; t < d.T; ++t) {
          const int64_t qi = d.qi(b, t, h0 + g);
          T sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t e = 0; e < d.D; ++e) sum += dout[qi + e] * o[qi + e];
          delta[static_cast<size_t>(g * d.T + t)] = sum;
          std::fill(dq + qi, dq + qi + d.D, T(0));
        }
      for (int64_t j0 = 0; j0 < d.S; j0 += kBc) {
        const int64_t nc = std::min(kBc, d.S - j0);
        std::fill(dk_acc.begin(), dk_acc.end(), T(0));
        std::fill(dv_acc.begin(), dv_acc.end(), T(0));
        if (any_kept(keep, b * d.S + j0, nc)) {
          load_transposed(kb, d.ldk(), j0, nc, d.D, kt.data());
          load_transposed(vb, d.ldk(), j0, nc, d.D, vt.data());
          for (int64_t g = 0; g < d.group; ++g) {
            const int64_t h = h0 + g;
            // Causal: query tiles that end before key j0 see none of this tile; skip them. A
            // window W also hides the tile from queries at or past its last key + W.
            const int64_t tend = window > 0 ? std::min(d.T, j0 + nc - 1 + window) : d.T;
            for (int64_t t0 = causal ? j0 / kBr * kBr : 0; t0 < tend; t0 += kBr) {
              const int64_t nr = std::min(kBr, d.T - t0);
              const T* qt = q + d.qi(b, t0, h);
              const T* dot = dout + d.qi(b, t0, h);
              scores(qt, d.ldq(), nr, kt.data(), nc, d.D, scale, p.data());
              scores(dot, d.ldq(), nr, vt.data(), nc, d.D, T(1), ds.data());
              for (int64_t i = 0; i < nr; ++i) {
                T* prow = p.data() + i * kBc;
                T* dsrow = ds.data() + i * kBc;
                const T L = lse[(b * d.Hq + h) * d.T + t0 + i];
                const T dlt = delta[static_cast<size_t>(g * d.T + t0 + i)];
                // lse = -inf: the query sees no key anywhere, so its gradients are zero.
                const int64_t jend = L == kNegInf ? 0 : causal_end(causal, t0 + i, j0, nc);
                const int64_t jbeg = window_begin(window, t0 + i, j0, nc);
                const uint8_t* kp = keep.empty() ? nullptr : keep.data() + b * d.S + j0;
#pragma omp simd
                for (int64_t j = 0; j < nc; ++j) {
                  const bool vis = j >= jbeg && j < jend && (kp == nullptr || kp[j] != 0);
                  const T pij = exp_fast(vis ? prow[j] - L : kNegInf);
                  prow[j] = pij;
                  dsrow[j] = pij * (dsrow[j] - dlt);
                }
              }
              // dv_acc [nc, D] += p^T [nc, nr] @ dO [nr, D]; dk_acc += dS^T @ q * scale.
              transpose_tile(p.data(), nr, nc, pt.data());
              transpose_tile(ds.data(), nr, nc, dst.data());
              gemm_acc(nc, d.D, nr, T(1), pt.data(), kBr, dot, d.ldq(), dv_acc.data(), d.D);
              gemm_acc(nc, d.D, nr, scale, dst.data(), kBr, qt, d.ldq(), dk_acc.data(), d.D);
              // dq [nr, D] += dS [nr, nc] @ k [nc, D] * scale
              gemm_acc(nr, d.D, nc, scale, ds.data(), kBc, kb + j0 * d.ldk(), d.ldk(),
                       dq + d.qi(b, t0, h), d.ldq());
            }
          }
        }
        for (int64_t j = 0; j < nc; ++j) {
          const int64_t ki = d.ki(b, j0 + j, hk);
          std::copy_n(dk_acc.data() + j * d.D, d.D, dk + ki);
          std::copy_n(dv_acc.data() + j * d.D, d.D, dv + ki);
        }
      }
    }
  }
}

void attention(const KernelCall& c) {
  dispatch_float(c.op, c.in[0].dtype, [&](auto zero) { attention_forward<decltype(zero)>(c); });
}

void attention_bwd(const KernelCall& c) {
  dispatch_float(c.op, c.in[0].dtype, [&](auto zero) { attention_backward<decltype(zero)>(c); });
}

}  // namespace

void register_cpu_attention_kernels(KernelTable& t) {
  t.set(OpKind::Attention, attention);
  t.set(OpKind::AttentionBackward, attention_bwd);
}

}  // namespace solo
