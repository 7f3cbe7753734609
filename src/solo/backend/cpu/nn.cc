// CPU kernels of the fused nn ops: one OpenMP-parallel loop over independent rows, with a
// vectorisable (omp simd) inner loop over the last dim. Row reductions (sums of squares,
// sums of exp) accumulate in double so long rows (V = 32000) keep f32 accuracy; the
// elementwise work stays in T. Weight gradients (dw, db) reduce over rows, so each thread
// sums its rows into a private partial and the partials are added afterwards (no races, and
// a fixed order for a given thread count).
#include <omp.h>

// The f32 rows (softmax, cross entropy) only vectorise if GCC may evaluate float ops
// unconditionally (see vexp); -fno-trapping-math allows it for this file's kernels alone.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/kernel_util.h"
#include "solo/core/rope_scaling.h"

namespace solo {
namespace {

using kernels::dispatch_float;
using kernels::read_index;

// exp that GCC can vectorise: std::exp is an opaque libm call (it may set errno), which
// blocks vectorisation of the softmax and cross-entropy rows. For f32 this is the Cephes
// expf (range reduction by ln 2, degree-6 polynomial, ~1 ulp); f64 keeps std::exp.
// Branch-free on purpose (GCC will not vectorise a loop whose float ops it cannot if-convert):
// the input is clamped to [-104, 88] and 2^n is applied as two normal factors 2^n1 * 2^n2,
// so results below the f32 range underflow to exactly 0, e.g. exp(-inf) = 0 for masked rows.
[[gnu::always_inline]] inline float vexp(float in) {
  const float x0 = std::min(std::max(in, -104.0f), 88.0f);
  // n = floor(x0 / ln 2 + 1/2), by truncation and a fix-up (std::floor is a libm call).
  const float fx = x0 * 1.44269504088896341f + 0.5f;
  int32_t n = static_cast<int32_t>(fx);
  n -= static_cast<int32_t>(static_cast<float>(n) > fx);
  const float nf = static_cast<float>(n);
  const float x = x0 - nf * 0.693359375f + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * x + 1.3981999507e-3f;
  p = p * x + 8.3334519073e-3f;
  p = p * x + 4.1665795894e-2f;
  p = p * x + 1.6666665459e-1f;
  p = p * x + 5.0000001201e-1f;
  const float y = p * x * x + x + 1.0f;
  const int32_t n1 = n >> 1, n2 = n - n1;  // each in [-75, 64]: 2^n1, 2^n2 are normal
  return y * std::bit_cast<float>((n1 + 127) << 23) * std::bit_cast<float>((n2 + 127) << 23);
}
inline double vexp(double x) {
  return std::exp(x);
}

// ---- softmax ------------------------------------------------------------------------------

// Softmax over the last dim: x [N, D] -> y [N, D]. Pass 1 finds the row max (stability),
// pass 2 writes exp(x - max) and sums it, pass 3 scales by 1 / sum.
template <class T>
void softmax_rows(const T* x, T* y, int64_t N, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < D; ++i) mx = xr[i] > mx ? xr[i] : mx;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < D; ++i) {
      yr[i] = vexp(xr[i] - mx);
      s += double(yr[i]);
    }
    const T inv = static_cast<T>(1.0 / s);
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) yr[i] *= inv;
  }
}

// Softmax over a middle axis: x [outer, n, inner] -> y, one strided column per (o, k).
// Rare in models (attention and heads use the last dim), so it is parallel but strided.
template <class T>
void softmax_strided(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < inner; ++k) {
      const int64_t base = o * n * inner + k;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[base + j * inner]);
      double s = 0;
      for (int64_t j = 0; j < n; ++j) {
        y[base + j * inner] = vexp(x[base + j * inner] - mx);
        s += double(y[base + j * inner]);
      }
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t j = 0; j < n; ++j) y[base + j * inner] *= inv;
    }
}

// A shape seen as [outer, n, inner] around `axis`.
void split_axis(const Shape& s, int axis, int64_t* outer, int64_t* n, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < axis; ++i) *outer *= s[i];
  *n = s[axis];
  for (int i = axis + 1; i < s.rank(); ++i) *inner *= s[i];
}

// x [..., n, ...] -> y, softmax along attrs "axis".
void softmax(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  int64_t outer, n, inner;
  split_axis(x.shape, static_cast<int>(c.attrs.i("axis")), &outer, &n, &inner);
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (inner == 1)
      softmax_rows(x.as<T>(), y.as<T>(), outer, n);
    else
      softmax_strided(x.as<T>(), y.as<T>(), outer, n, inner);
  });
}

// y, dy [..., n, ...] -> dx = y * (dy - sum(dy * y)) along attrs "axis".
void softmax_backward(const KernelCall& c) {
  const TensorRef &y = c.in[0], &dy = c.in[1], &dx = c.out[0];
  int64_t outer, n, inner;
  split_axis(y.shape, static_cast<int>(c.attrs.i("axis")), &outer, &n, &inner);
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *yp = y.as<T>(), *dyp = dy.as<T>();
    T* dxp = dx.as<T>();
    if (inner == 1) {
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < outer; ++r) {
        const T *yr = yp + r * n, *dyr = dyp + r * n;
        T* dxr = dxp + r * n;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; ++i) s += double(dyr[i]) * double(yr[i]);
        const T st = static_cast<T>(s);
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) dxr[i] = yr[i] * (dyr[i] - st);
      }
      return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < inner; ++k) {
        const int64_t base = o * n * inner + k;
        double s = 0;
        for (int64_t j = 0; j < n; ++j)
          s += double(dyp[base + j * inner]) * double(yp[base + j * inner]);
        const T st = static_cast<T>(s);
        for (int64_t j = 0; j < n; ++j)
          dxp[base + j * inner] = yp[base + j * inner] * (dyp[base + j * inner] - st);
      }
  });
}

// ---- rms norm -----------------------------------------------------------------------------

// 1 / sqrt(mean(x^2) + eps) of one row x [D], the sum of squares in double.
template <class T>
T rms_rstd(const T* x, int64_t D, double eps) {
  double ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < D; ++i) ss += double(x[i]) * double(x[i]);
  return static_cast<T>(1.0 / std::sqrt(ss / double(D) + eps));
}

// x [N, D], w [D] -> y [N, D] = x * rstd * w
void rms_norm(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &y = c.out[0];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.as<T>(), *wp = w.as<T>();
    T* yp = y.as<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; ++r) {
      const T* xr = xp + r * D;
      T* yr = yp + r * D;
      const T rstd = rms_rstd(xr, D, eps);
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * rstd * wp[i];
    }
  });
}

// Adds the per-thread partial sums part [threads, D] into out [D].
template <class T>
void reduce_partials(const std::vector<double>& part, int threads, int64_t D, T* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < D; ++i) {
    double s = 0;
    for (int t = 0; t < threads; ++t) s += part[static_cast<size_t>(t * D + i)];
    out[i] = static_cast<T>(s);
  }
}

// x [N, D], w [D], dy [N, D] -> dx [N, D], dw [D]. With xh = x * rstd, g = dy * w:
// dx = rstd * (g - xh * mean(g * xh)); dw = sum over rows of dy * xh (per-thread partials).
void rms_norm_backward(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2], &dx = c.out[0], &dw = c.out[1];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.as<T>(), *wp = w.as<T>(), *dyp = dy.as<T>();
    T* dxp = dx.as<T>();
    const int threads = omp_get_max_threads();
    std::vector<double> part(static_cast<size_t>(threads * D), 0.0);
#pragma omp parallel
    {
      double* acc = part.data() + static_cast<size_t>(omp_get_thread_num()) * D;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < N; ++r) {
        const T *xr = xp + r * D, *dyr = dyp + r * D;
        T* dxr = dxp + r * D;
        const T rstd = rms_rstd(xr, D, eps);
        double gx = 0;
#pragma omp simd reduction(+ : gx)
        for (int64_t i = 0; i < D; ++i) gx += double(dyr[i] * wp[i]) * double(xr[i] * rstd);
        const T m = static_cast<T>(gx / double(D));
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) {
          const T xh = xr[i] * rstd;
          dxr[i] = rstd * (dyr[i] * wp[i] - xh * m);
          acc[i] += double(dyr[i] * xh);
        }
      }
    }
    reduce_partials(part, threads, D, dw.as<T>());
  });
}

// ---- layer norm ---------------------------------------------------------------------------

// Mean and 1 / sqrt(var + eps) of one row x [D] (biased var, two passes in double).
template <class T>
void moments(const T* x, int64_t D, double eps, T* mean, T* rstd) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < D; ++i) s += double(x[i]);
  const double mu = s / double(D);
  double v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t i = 0; i < D; ++i) v += (double(x[i]) - mu) * (double(x[i]) - mu);
  *mean = static_cast<T>(mu);
  *rstd = static_cast<T>(1.0 / std::sqrt(v / double(D) + eps));
}

// x [N, D], w [D], b [D] -> y [N, D] = (x - mean) * rstd * w + b
void layer_norm(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &b = c.in[2], &y = c.out[0];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.as<T>(), *wp = w.as<T>(), *bp = b.as<T>();
    T* yp = y.as<T>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; ++r) {
      const T* xr = xp + r * D;
      T* yr = yp + r * D;
      T mean, rstd;
      moments(xr, D, eps, &mean, &rstd);
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd * wp[i] + bp[i];
    }
  });
}

// x [N, D], w [D], dy [N, D] -> dx [N, D], dw [D], db [D]. With xh normalised x, g = dy * w:
// dx = rstd * (g - mean(g) - xh * mean(g * xh)); dw = sum dy * xh; db = sum dy.
void layer_norm_backward(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2];
  const TensorRef &dx = c.out[0], &dw = c.out[1], &db = c.out[2];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = x.as<T>(), *wp = w.as<T>(), *dyp = dy.as<T>();
    T* dxp = dx.as<T>();
    const int threads = omp_get_max_threads();
    // Per thread: D partial sums of dw, then D of db.
    std::vector<double> part_w(static_cast<size_t>(threads * D), 0.0);
    std::vector<double> part_b(static_cast<size_t>(threads * D), 0.0);
#pragma omp parallel
    {
      const size_t off = static_cast<size_t>(omp_get_thread_num()) * D;
      double *acc_w = part_w.data() + off, *acc_b = part_b.data() + off;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < N; ++r) {
        const T *xr = xp + r * D, *dyr = dyp + r * D;
        T* dxr = dxp + r * D;
        T mean, rstd;
        moments(xr, D, eps, &mean, &rstd);
        double g_sum = 0, gx_sum = 0;
#pragma omp simd reduction(+ : g_sum, gx_sum)
        for (int64_t i = 0; i < D; ++i) {
          const T g = dyr[i] * wp[i];
          g_sum += double(g);
          gx_sum += double(g) * double((xr[i] - mean) * rstd);
        }
        const T g_mean = static_cast<T>(g_sum / double(D));
        const T gx_mean = static_cast<T>(gx_sum / double(D));
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) {
          const T xh = (xr[i] - mean) * rstd;
          dxr[i] = rstd * (dyr[i] * wp[i] - g_mean - xh * gx_mean);
          acc_w[i] += double(dyr[i] * xh);
          acc_b[i] += double(dyr[i]);
        }
      }
    }
    reduce_partials(part_w, threads, D, dw.as<T>());
    reduce_partials(part_b, threads, D, db.as<T>());
  });
}

// ---- rope ---------------------------------------------------------------------------------

// x [B, T, H, D] -> y [B, T, H, D], rotate-half convention. The angles depend only on
// (t, i), so s cos / s sin are tabulated once per call as [T, D/2] (in double, then rounded)
// and shared by all batches and heads.
void rope(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const RopeScaling scaling = rope_scaling_from_attrs(c.attrs);
  const double sign = c.attrs.i("inverse") ? -1.0 : 1.0, s = scaling.attention_factor;
  const int64_t B = x.shape[0], S = x.shape[1], H = x.shape[2], D = x.shape[3], half = D / 2;
  if (x.numel() == 0) return;
  const std::vector<float> freq = rope_inv_freq(scaling, D, S);
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    std::vector<T> cos_t(static_cast<size_t>(S * half)), sin_t(static_cast<size_t>(S * half));
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < S; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double a = sign * double(t) * double(freq[static_cast<size_t>(i)]);
        cos_t[static_cast<size_t>(t * half + i)] = static_cast<T>(s * std::cos(a));
        sin_t[static_cast<size_t>(t * half + i)] = static_cast<T>(s * std::sin(a));
      }
    const T* xp = x.as<T>();
    T* yp = y.as<T>();
    const int64_t rows = B * S * H;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = (r / H) % S;
      const T *cs = cos_t.data() + t * half, *sn = sin_t.data() + t * half;
      const T* x1 = xp + r * D;
      const T* x2 = x1 + half;
      T* y1 = yp + r * D;
      T* y2 = y1 + half;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const T a = x1[i], b = x2[i];
        y1[i] = a * cs[i] - b * sn[i];
        y2[i] = b * cs[i] + a * sn[i];
      }
    }
  });
}

// ---- cross entropy ------------------------------------------------------------------------

// Validates labels [N] serially (a throw cannot leave an OpenMP region) and returns the
// number of rows whose label is not ignore_index.
int64_t count_labels(OpKind op, const TensorRef& labels, int64_t V, int64_t ignore) {
  int64_t count = 0;
  for (int64_t n = 0; n < labels.numel(); ++n) {
    const int64_t label = read_index(labels, n);
    SOLO_CHECK(label == ignore || (label >= 0 && label < V), op_name(op), ": label ", label,
               " at row ", n, " is outside [0, ", V, ") (V = ", V, ") and is not ignore_index ",
               ignore);
    count += label != ignore;
  }
  return count;
}

// Row max and sum of exp(x - max) of one row x [V]: two passes, the sum in double.
template <class T>
void row_max_sumexp(const T* x, int64_t V, T* mx_out, double* sum_out) {
  T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < V; ++j) mx = x[j] > mx ? x[j] : mx;
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < V; ++j) s += double(vexp(x[j] - mx));
  *mx_out = mx;
  *sum_out = s;
}

// logits [N, V], labels [N] -> loss [] = mean over kept rows of logsumexp - logit[label].
void cross_entropy(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &loss = c.out[0];
  const int64_t ignore = c.attrs.i("ignore_index");
  const int64_t N = logits.shape[0], V = logits.shape[1];
  const int64_t count = count_labels(c.op, labels, V, ignore);
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* lp = logits.as<T>();
    double total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = read_index(labels, n);
      if (label == ignore) continue;
      const T* row = lp + n * V;
      T mx;
      double s;
      row_max_sumexp(row, V, &mx, &s);
      total += double(mx) + std::log(s) - double(row[label]);
    }
    // NaN when every row is ignored, as in PyTorch.
    const double mean = count ? total / double(count) : std::numeric_limits<double>::quiet_NaN();
    if (loss.dtype == DType::F64)
      *loss.as<double>() = mean;
    else
      *loss.as<float>() = static_cast<float>(mean);
  });
}

// One kept row: logits x [V] -> out [V] = (softmax(x) - onehot(label)) * scale.
template <class T>
void softmax_minus_onehot_row(const T* x, T* out, int64_t V, int64_t label, double scale) {
  T mx;
  double s;
  row_max_sumexp(x, V, &mx, &s);
  const T k = static_cast<T>(scale / s);  // softmax * scale = exp(x - mx) * k
#pragma omp simd
  for (int64_t j = 0; j < V; ++j) out[j] = vexp(x[j] - mx) * k;
  out[label] -= static_cast<T>(scale);
}

// logits [N, V], labels [N], dloss [] -> dlogits [N, V] = (softmax - onehot) * dloss / count;
// ignored rows are zero.
void cross_entropy_backward(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &dloss = c.in[2], &dlogits = c.out[0];
  const int64_t ignore = c.attrs.i("ignore_index");
  const int64_t N = logits.shape[0], V = logits.shape[1];
  const int64_t count = count_labels(c.op, labels, V, ignore);
  const double d = dloss.dtype == DType::F64 ? *dloss.as<double>() : double(*dloss.as<float>());
  const double scale = count ? d / double(count) : 0.0;
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* lp = logits.as<T>();
    T* dp = dlogits.as<T>();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = read_index(labels, n);
      T* out = dp + n * V;
      if (label == ignore) {
#pragma omp simd
        for (int64_t j = 0; j < V; ++j) out[j] = T(0);
        continue;
      }
      softmax_minus_onehot_row(lp + n * V, out, V, label, scale);
    }
  });
}

}  // namespace

void register_cpu_nn_kernels(KernelTable& t) {
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
