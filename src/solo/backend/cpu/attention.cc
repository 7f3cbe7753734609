// Flash-style attention on the CPU: queries and keys are processed in tiles and the softmax
// is computed online (running max and sum), so no T x S score matrix is ever materialised;
// memory beyond the outputs is a few tiles per thread. The backward recomputes the
// probabilities tile by tile from q, k and the saved lse (FlashAttention-2, Dao 2023).
#include <algorithm>
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

// Number of keys of the tile [j0, j0 + nc) that query t may see under the causal limit.
int64_t causal_end(bool causal, int64_t t, int64_t j0, int64_t nc) {
  return causal ? std::clamp<int64_t>(t - j0 + 1, 0, nc) : nc;
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

// s [nr, kBc] (+)= alpha * a[nr rows of D at stride lda] @ kt [D, kBc] over the first nc keys.
template <class T>
void scores(const T* a, int64_t lda, int64_t nr, const T* kt, int64_t nc, int64_t D, T alpha,
            T* s) {
  for (int64_t i = 0; i < nr; ++i) {
    T* srow = s + i * kBc;
    const T* arow = a + i * lda;
    std::fill(srow, srow + nc, T(0));
    for (int64_t e = 0; e < D; ++e) {
      const T ae = arow[e] * alpha;
      const T* kte = kt + e * kBc;
#pragma omp simd
      for (int64_t j = 0; j < nc; ++j) srow[j] += ae * kte[j];
    }
  }
}

// q [B, T, Hq, D], k [B, S, Hkv, D], v [B, S, Hkv, D] (, key_mask [B, S])
//   -> out [B, T, Hq, D], lse [B, Hq, T]
// One task per (batch, head, query tile); tasks are independent, so no synchronisation.
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
      // Causal: keys past the tile's last query are invisible to all its rows; skip them.
      const int64_t kend = causal ? std::min(d.S, t0 + nr) : d.S;
      for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
        const int64_t nc = std::min(kBc, kend - j0);
        if (!any_kept(keep, b * d.S + j0, nc)) continue;
        load_transposed(kb, d.ldk(), j0, nc, d.D, kt.data());
        scores(qt, d.ldq(), nr, kt.data(), nc, d.D, scale, s.data());
        for (int64_t i = 0; i < nr; ++i) {
          T* srow = s.data() + i * kBc;
          const int64_t jend = causal_end(causal, t0 + i, j0, nc);
          for (int64_t j = jend; j < nc; ++j) srow[j] = kNegInf;
          if (!keep.empty())
            for (int64_t j = 0; j < jend; ++j)
              if (!keep[static_cast<size_t>(b * d.S + j0 + j)]) srow[j] = kNegInf;
          T mx = m[i];
#pragma omp simd reduction(max : mx)
          for (int64_t j = 0; j < nc; ++j) mx = std::max(mx, srow[j]);
          if (mx == kNegInf) continue;  // no visible key yet: the row stays empty
          // Online softmax: rescale what was accumulated under the old max.
          const T corr = std::exp(m[i] - mx);
          T sum = 0;
          for (int64_t j = 0; j < nc; ++j) sum += srow[j] = std::exp(srow[j] - mx);
          l[i] = l[i] * corr + sum;
          m[i] = mx;
          T* arow = acc.data() + i * d.D;
#pragma omp simd
          for (int64_t e = 0; e < d.D; ++e) arow[e] *= corr;
          // acc [nr, D] += p [nr, nc] @ v [nc, D], streaming along D.
          for (int64_t j = 0; j < nc; ++j) {
            const T p = srow[j];
            const T* vrow = vb + (j0 + j) * d.ldk();
#pragma omp simd
            for (int64_t e = 0; e < d.D; ++e) arow[e] += p * vrow[e];
          }
        }
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
// read it, so nothing is shared between threads. Per key tile, for each query tile:
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
  const std::vector<uint8_t> keep = read_key_mask(c, 6, d);
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();

#pragma omp parallel
  {
    std::vector<T> kt(static_cast<size_t>(d.D * kBc)), vt(kt.size());
    std::vector<T> p(static_cast<size_t>(kBr * kBc)), ds(p.size());
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
            // Causal: query tiles that end before key j0 see none of this tile; skip them.
            for (int64_t t0 = causal ? j0 / kBr * kBr : 0; t0 < d.T; t0 += kBr) {
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
                for (int64_t j = 0; j < nc; ++j) {
                  const bool vis =
                      j < jend && (keep.empty() || keep[static_cast<size_t>(b * d.S + j0 + j)]);
                  const T pij = vis ? std::exp(prow[j] - L) : T(0);
                  prow[j] = pij;
                  dsrow[j] = pij * (dsrow[j] - dlt);
                }
              }
              // dv_acc [nc, D] += p^T dO, dk_acc [nc, D] += dS^T q scale (streaming along D).
              for (int64_t i = 0; i < nr; ++i) {
                const T* qrow = qt + i * d.ldq();
                const T* dorow = dot + i * d.ldq();
                for (int64_t j = 0; j < nc; ++j) {
                  const T pij = p[static_cast<size_t>(i * kBc + j)];
                  const T dsij = ds[static_cast<size_t>(i * kBc + j)] * scale;
                  T* dvrow = dv_acc.data() + j * d.D;
                  T* dkrow = dk_acc.data() + j * d.D;
#pragma omp simd
                  for (int64_t e = 0; e < d.D; ++e) {
                    dvrow[e] += pij * dorow[e];
                    dkrow[e] += dsij * qrow[e];
                  }
                }
              }
              // dq [nr, D] += dS k scale.
              for (int64_t i = 0; i < nr; ++i) {
                T* dqrow = dq + d.qi(b, t0 + i, h);
                for (int64_t j = 0; j < nc; ++j) {
                  const T dsij = ds[static_cast<size_t>(i * kBc + j)] * scale;
                  const T* krow = kb + (j0 + j) * d.ldk();
#pragma omp simd
                  for (int64_t e = 0; e < d.D; ++e) dqrow[e] += dsij * krow[e];
                }
              }
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
