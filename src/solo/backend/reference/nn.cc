// Naive reference kernels of the fused nn ops: plain loops, sums in double, no threads.
// They follow the formulas of ir/ops.h literally and serve as the oracle for other backends.
#include <cmath>
#include <limits>
#include <vector>

#include "solo/backend/kernel_util.h"
#include "solo/backend/reference/reference_backend.h"
#include "solo/core/rope_scaling.h"

namespace solo {
namespace {

using kernels::dispatch_float;
using kernels::read_index;

// A tensor seen as [outer, n, inner] around `axis`: element (o, j, k) is at
// (o * n + j) * inner + k.
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisView axis_view(const Shape& s, int axis) {
  AxisView v;
  for (int i = 0; i < axis; ++i) v.outer *= s[i];
  v.n = s[axis];
  for (int i = axis + 1; i < s.rank(); ++i) v.inner *= s[i];
  return v;
}

// x -> y = exp(x - max) / sum(exp(x - max)) along attrs "axis" (same shape).
void softmax(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const AxisView v = axis_view(x.shape, static_cast<int>(c.attrs.i("axis")));
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t k = 0; k < v.inner; ++k) {
        auto at = [&](int64_t j) { return (o * v.n + j) * v.inner + k; };
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < v.n; ++j) mx = std::max(mx, double(x.as<T>()[at(j)]));
        double s = 0;
        for (int64_t j = 0; j < v.n; ++j) s += std::exp(double(x.as<T>()[at(j)]) - mx);
        for (int64_t j = 0; j < v.n; ++j)
          y.as<T>()[at(j)] = static_cast<T>(std::exp(double(x.as<T>()[at(j)]) - mx) / s);
      }
  });
}

// y, dy -> dx = y * (dy - sum(dy * y)) along attrs "axis".
void softmax_backward(const KernelCall& c) {
  const TensorRef &y = c.in[0], &dy = c.in[1], &dx = c.out[0];
  const AxisView v = axis_view(y.shape, static_cast<int>(c.attrs.i("axis")));
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t k = 0; k < v.inner; ++k) {
        auto at = [&](int64_t j) { return (o * v.n + j) * v.inner + k; };
        double s = 0;
        for (int64_t j = 0; j < v.n; ++j) s += double(dy.as<T>()[at(j)]) * double(y.as<T>()[at(j)]);
        for (int64_t j = 0; j < v.n; ++j)
          dx.as<T>()[at(j)] =
              static_cast<T>(double(y.as<T>()[at(j)]) * (double(dy.as<T>()[at(j)]) - s));
      }
  });
}

// x [N, D], w [D] -> y = x / sqrt(mean(x^2) + eps) * w
void rms_norm(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &y = c.out[0];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t r = 0; r < N; ++r) {
      const T* xr = x.as<T>() + r * D;
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) ss += double(xr[i]) * double(xr[i]);
      const double rstd = 1.0 / std::sqrt(ss / double(D) + eps);
      for (int64_t i = 0; i < D; ++i)
        y.as<T>()[r * D + i] = static_cast<T>(double(xr[i]) * rstd * double(w.as<T>()[i]));
    }
  });
}

// x [N, D], w [D], dy [N, D] -> dx [N, D], dw [D]. With xh = x * rstd and g = dy * w:
// dx = rstd * (g - xh * mean(g * xh)), dw = sum over rows of dy * xh.
void rms_norm_backward(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2], &dx = c.out[0], &dw = c.out[1];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    std::vector<double> dw_acc(static_cast<size_t>(D), 0.0);
    for (int64_t r = 0; r < N; ++r) {
      const T *xr = x.as<T>() + r * D, *dyr = dy.as<T>() + r * D;
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) ss += double(xr[i]) * double(xr[i]);
      const double rstd = 1.0 / std::sqrt(ss / double(D) + eps);
      double gx = 0;
      for (int64_t i = 0; i < D; ++i)
        gx += double(dyr[i]) * double(w.as<T>()[i]) * double(xr[i]) * rstd;
      gx /= double(D);
      for (int64_t i = 0; i < D; ++i) {
        const double xh = double(xr[i]) * rstd;
        dx.as<T>()[r * D + i] =
            static_cast<T>(rstd * (double(dyr[i]) * double(w.as<T>()[i]) - xh * gx));
        dw_acc[static_cast<size_t>(i)] += double(dyr[i]) * xh;
      }
    }
    for (int64_t i = 0; i < D; ++i) dw.as<T>()[i] = static_cast<T>(dw_acc[static_cast<size_t>(i)]);
  });
}

// x [N, D], w [D], b [D] -> y = (x - mean) / sqrt(var + eps) * w + b, var biased (/ D).
void layer_norm(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &b = c.in[2], &y = c.out[0];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t r = 0; r < N; ++r) {
      const T* xr = x.as<T>() + r * D;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < D; ++i) mean += double(xr[i]);
      mean /= double(D);
      for (int64_t i = 0; i < D; ++i) var += (double(xr[i]) - mean) * (double(xr[i]) - mean);
      var /= double(D);
      const double rstd = 1.0 / std::sqrt(var + eps);
      for (int64_t i = 0; i < D; ++i)
        y.as<T>()[r * D + i] = static_cast<T>((double(xr[i]) - mean) * rstd * double(w.as<T>()[i]) +
                                              double(b.as<T>()[i]));
    }
  });
}

// x [N, D], w [D], dy [N, D] -> dx [N, D], dw [D], db [D]. With xh the normalised x and
// g = dy * w: dx = rstd * (g - mean(g) - xh * mean(g * xh)), dw = sum dy * xh, db = sum dy.
void layer_norm_backward(const KernelCall& c) {
  const TensorRef &x = c.in[0], &w = c.in[1], &dy = c.in[2];
  const TensorRef &dx = c.out[0], &dw = c.out[1], &db = c.out[2];
  const double eps = c.attrs.f("eps");
  const int64_t D = w.numel(), N = x.numel() / D;
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    std::vector<double> dw_acc(static_cast<size_t>(D), 0.0), db_acc(static_cast<size_t>(D), 0.0);
    std::vector<double> xh(static_cast<size_t>(D));
    for (int64_t r = 0; r < N; ++r) {
      const T *xr = x.as<T>() + r * D, *dyr = dy.as<T>() + r * D;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < D; ++i) mean += double(xr[i]);
      mean /= double(D);
      for (int64_t i = 0; i < D; ++i) var += (double(xr[i]) - mean) * (double(xr[i]) - mean);
      var /= double(D);
      const double rstd = 1.0 / std::sqrt(var + eps);
      double g_mean = 0, gx_mean = 0;
      for (int64_t i = 0; i < D; ++i) {
        const auto k = static_cast<size_t>(i);
        xh[k] = (double(xr[i]) - mean) * rstd;
        const double gi = double(dyr[i]) * double(w.as<T>()[i]);
        g_mean += gi;
        gx_mean += gi * xh[k];
      }
      g_mean /= double(D);
      gx_mean /= double(D);
      for (int64_t i = 0; i < D; ++i) {
        const auto k = static_cast<size_t>(i);
        const double gi = double(dyr[i]) * double(w.as<T>()[i]);
        dx.as<T>()[r * D + i] = static_cast<T>(rstd * (gi - g_mean - xh[k] * gx_mean));
        dw_acc[k] += double(dyr[i]) * xh[k];
        db_acc[k] += double(dyr[i]);
      }
    }
    for (int64_t i = 0; i < D; ++i) {
      dw.as<T>()[i] = static_cast<T>(dw_acc[static_cast<size_t>(i)]);
      db.as<T>()[i] = static_cast<T>(db_acc[static_cast<size_t>(i)]);
    }
  });
}

// x [B, T, H, D] -> y [B, T, H, D]: for i < D/2, a = t * inv_freq[i] (negated if inverse),
//   y[i] = s (x[i] cos a - x[i + D/2] sin a),  y[i + D/2] = s (x[i + D/2] cos a + x[i] sin a).
void rope(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const RopeScaling scaling = rope_scaling_from_attrs(c.attrs);
  const double sign = c.attrs.i("inverse") ? -1.0 : 1.0, s = scaling.attention_factor;
  const int64_t B = x.shape[0], T_ = x.shape[1], H = x.shape[2], D = x.shape[3], half = D / 2;
  if (x.numel() == 0) return;
  const std::vector<float> freq = rope_inv_freq(scaling, D, T_);
  dispatch_float(c.op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T_; ++t)
        for (int64_t h = 0; h < H; ++h) {
          const int64_t base = ((b * T_ + t) * H + h) * D;
          for (int64_t i = 0; i < half; ++i) {
            const double a = sign * double(t) * double(freq[static_cast<size_t>(i)]);
            const double x1 = double(x.as<T>()[base + i]), x2 = double(x.as<T>()[base + i + half]);
            y.as<T>()[base + i] = static_cast<T>(s * (x1 * std::cos(a) - x2 * std::sin(a)));
            y.as<T>()[base + i + half] = static_cast<T>(s * (x2 * std::cos(a) + x1 * std::sin(a)));
          }
        }
  });
}

// Throws unless label is ignore_index or in [0, V).
void check_label(OpKind op, int64_t label, int64_t row, int64_t V, int64_t ignore_index) {
  SOLO_CHECK(label == ignore_index || (label >= 0 && label < V), op_name(op), ": label ", label,
             " at row ", row, " is outside [0, ", V, ") (V = ", V, ") and is not ignore_index ",
             ignore_index);
}

// logits [N, V], labels [N] -> loss [] = mean over non-ignored rows of
// logsumexp(logits[n]) - logits[n, label]; NaN when every row is ignored.
void cross_entropy(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &loss = c.out[0];
  const int64_t ignore = c.attrs.i("ignore_index");
  const int64_t N = logits.shape[0], V = logits.shape[1];
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    double total = 0;
    int64_t count = 0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = read_index(labels, n);
      check_label(c.op, label, n, V, ignore);
      if (label == ignore) continue;
      const T* row = logits.as<T>() + n * V;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
      double s = 0;
      for (int64_t j = 0; j < V; ++j) s += std::exp(double(row[j]) - mx);
      total += mx + std::log(s) - double(row[label]);
      ++count;
    }
    const double mean = count ? total / double(count) : std::numeric_limits<double>::quiet_NaN();
    if (loss.dtype == DType::F64)
      *loss.as<double>() = mean;
    else
      *loss.as<float>() = static_cast<float>(mean);
  });
}

// logits [N, V], labels [N], dloss [] -> dlogits [N, V] = (softmax - onehot) * dloss / count,
// zero rows for ignored labels.
void cross_entropy_backward(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &dloss = c.in[2], &dlogits = c.out[0];
  const int64_t ignore = c.attrs.i("ignore_index");
  const int64_t N = logits.shape[0], V = logits.shape[1];
  const double d = dloss.dtype == DType::F64 ? *dloss.as<double>() : double(*dloss.as<float>());
  int64_t count = 0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t label = read_index(labels, n);
    check_label(c.op, label, n, V, ignore);
    count += label != ignore;
  }
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = read_index(labels, n);
      const T* row = logits.as<T>() + n * V;
      T* out = dlogits.as<T>() + n * V;
      if (label == ignore) {
        for (int64_t j = 0; j < V; ++j) out[j] = T(0);
        continue;
      }
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
      double s = 0;
      for (int64_t j = 0; j < V; ++j) s += std::exp(double(row[j]) - mx);
      for (int64_t j = 0; j < V; ++j) {
        const double p = std::exp(double(row[j]) - mx) / s;
        out[j] = static_cast<T>((p - (j == label ? 1.0 : 0.0)) * d / double(count));
      }
    }
  });
}

}  // namespace

void register_reference_nn_kernels(KernelTable& t) {
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
