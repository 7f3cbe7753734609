#include <cmath>
#include <limits>
#include <vector>

#include "solo/backend/kernel_util.h"
#include "solo/backend/reference/reference_backend.h"

namespace solo {
namespace {

using kernels::dispatch_float;

// Sizes of q [B, T, Hq, D], k/v [B, S, Hkv, D]; the mask (if any) is the last input.
struct Dims {
  int64_t B, T, S, Hq, Hkv, D;
  Dims(const TensorRef& q, const TensorRef& k)
      : B(q.shape[0]),
        T(q.shape[1]),
        S(k.shape[1]),
        Hq(q.shape[2]),
        Hkv(k.shape[2]),
        D(q.shape[3]) {}
  int64_t qi(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * Hq + h) * D; }
  int64_t ki(int64_t b, int64_t s, int64_t h) const { return ((b * S + s) * Hkv + h) * D; }
};

// Causal: key s <= t; with window W > 0 also s > t - W (the last W keys, t itself included).
bool visible(const TensorRef* mask, bool causal, int64_t window, const Dims& d, int64_t b,
             int64_t t, int64_t s) {
  if (causal && s > t) return false;
  if (causal && window > 0 && s <= t - window) return false;
  return mask == nullptr || kernels::read_truth(*mask, b * d.S + s);
}

// Softmax probabilities p [S] of query (b, t, h) over its visible keys (0 elsewhere); returns
// false when no key is visible.
template <class T>
bool probabilities(const KernelCall& c, const TensorRef* mask, const Dims& d, int64_t b, int64_t t,
                   int64_t h, std::vector<double>& p, double* lse) {
  const TensorRef &q = c.in[0], &k = c.in[1];
  const bool causal = c.attrs.i("causal") != 0;
  const int64_t window = c.attrs.i_or("window", 0);
  const double scale = c.attrs.f("scale");
  const int64_t hk = h / (d.Hq / d.Hkv);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t s = 0; s < d.S; ++s) {
    p[s] = -std::numeric_limits<double>::infinity();
    if (!visible(mask, causal, window, d, b, t, s)) continue;
    double dot = 0;
    for (int64_t i = 0; i < d.D; ++i)
      dot += double(q.as<T>()[d.qi(b, t, h) + i]) * double(k.as<T>()[d.ki(b, s, hk) + i]);
    p[s] = dot * scale;
    m = std::max(m, p[s]);
  }
  if (m == -std::numeric_limits<double>::infinity()) {
    for (int64_t s = 0; s < d.S; ++s) p[s] = 0;
    *lse = m;
    return false;
  }
  double sum = 0;
  for (int64_t s = 0; s < d.S; ++s) sum += p[s] = std::exp(p[s] - m);
  for (int64_t s = 0; s < d.S; ++s) p[s] /= sum;
  *lse = m + std::log(sum);
  return true;
}

// q [B, T, Hq, D], k [B, S, Hkv, D], v [B, S, Hkv, D] (, key_mask [B, S])
//   -> out [B, T, Hq, D], lse [B, Hq, T]
// For each query: all scores, mask, softmax, weighted sum of v (accumulated in double).
void attention(const KernelCall& c) {
  const Dims d(c.in[0], c.in[1]);
  const TensorRef &v = c.in[2], &out = c.out[0], &lse = c.out[1];
  const TensorRef* mask = c.in.size() > 3 ? &c.in[3] : nullptr;
  dispatch_float(c.op, out.dtype, [&](auto zero) {
    using T = decltype(zero);
    std::vector<double> p(static_cast<size_t>(d.S));
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t h = 0; h < d.Hq; ++h)
        for (int64_t t = 0; t < d.T; ++t) {
          double l = 0;
          probabilities<T>(c, mask, d, b, t, h, p, &l);
          const int64_t hk = h / (d.Hq / d.Hkv);
          for (int64_t i = 0; i < d.D; ++i) {
            double acc = 0;
            for (int64_t s = 0; s < d.S; ++s) acc += p[s] * double(v.as<T>()[d.ki(b, s, hk) + i]);
            out.as<T>()[d.qi(b, t, h) + i] = static_cast<T>(acc);
          }
          const int64_t li = (b * d.Hq + h) * d.T + t;
          if (lse.dtype == DType::F64)
            lse.as<double>()[li] = l;
          else
            lse.as<float>()[li] = static_cast<float>(l);
        }
  });
}

// Inputs (q, k, v, out, lse, dout[, key_mask]) -> dq [B, T, Hq, D], dk, dv [B, S, Hkv, D].
// Textbook formulas per query row, with P recomputed by a plain softmax (lse is not read):
//   dP = dO V^T, dS = P * (dP - rowsum(dO * O)), dQ = dS K scale, dK += dS^T Q scale,
//   dV += P^T dO. Query heads of a group all add into their shared kv head.
void attention_backward(const KernelCall& c) {
  const Dims d(c.in[0], c.in[1]);
  const TensorRef &q = c.in[0], &k = c.in[1], &v = c.in[2], &o = c.in[3], &dout = c.in[5];
  const TensorRef* mask = c.in.size() > 6 ? &c.in[6] : nullptr;
  const double scale = c.attrs.f("scale");
  dispatch_float(c.op, q.dtype, [&](auto zero) {
    using T = decltype(zero);
    std::vector<double> dk(static_cast<size_t>(c.out[1].numel()), 0.0), dv(dk.size(), 0.0);
    std::vector<double> p(static_cast<size_t>(d.S)), ds(p.size());
    T* dq = c.out[0].as<T>();
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t h = 0; h < d.Hq; ++h)
        for (int64_t t = 0; t < d.T; ++t) {
          const int64_t hk = h / (d.Hq / d.Hkv), qi = d.qi(b, t, h);
          double l = 0;
          const bool any = probabilities<T>(c, mask, d, b, t, h, p, &l);
          for (int64_t i = 0; i < d.D; ++i) dq[qi + i] = T(0);
          if (!any) continue;  // no visible key: the output is constant zero
          double delta = 0;    // rowsum(dO * O)
          for (int64_t i = 0; i < d.D; ++i)
            delta += double(dout.as<T>()[qi + i]) * double(o.as<T>()[qi + i]);
          for (int64_t s = 0; s < d.S; ++s) {
            double dp = 0;
            for (int64_t i = 0; i < d.D; ++i)
              dp += double(dout.as<T>()[qi + i]) * double(v.as<T>()[d.ki(b, s, hk) + i]);
            ds[s] = p[s] * (dp - delta);
          }
          for (int64_t i = 0; i < d.D; ++i) {
            double acc = 0;
            for (int64_t s = 0; s < d.S; ++s) acc += ds[s] * double(k.as<T>()[d.ki(b, s, hk) + i]);
            dq[qi + i] = static_cast<T>(acc * scale);
          }
          for (int64_t s = 0; s < d.S; ++s)
            for (int64_t i = 0; i < d.D; ++i) {
              const auto ki = static_cast<size_t>(d.ki(b, s, hk) + i);
              dk[ki] += ds[s] * double(q.as<T>()[qi + i]) * scale;
              dv[ki] += p[s] * double(dout.as<T>()[qi + i]);
            }
        }
    for (size_t i = 0; i < dk.size(); ++i) {
      c.out[1].as<T>()[i] = static_cast<T>(dk[i]);
      c.out[2].as<T>()[i] = static_cast<T>(dv[i]);
    }
  });
}

}  // namespace

void register_reference_attention_kernels(KernelTable& t) {
  t.set(OpKind::Attention, attention);
  t.set(OpKind::AttentionBackward, attention_backward);
}

}  // namespace solo
