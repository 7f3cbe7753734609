// Naive data-movement, matmul and lookup kernels: one loop per output element, no threads.
// Pure data movement (permute, slice, concat, embedding) copies elements by byte size, so
// it works for every dtype.
#include <cstring>

#include "solo/backend/kernel_util.h"
#include "solo/backend/reference/reference_backend.h"

namespace solo {
namespace {

using kernels::dispatch_float;
using kernels::read_index;

// Copies element `src_i` of `src` to element `dst_i` of `dst` (same dtype).
void copy_element(const TensorRef& dst, int64_t dst_i, const TensorRef& src, int64_t src_i) {
  const size_t es = dtype_size(dst.dtype);
  std::memcpy(static_cast<char*>(dst.data) + static_cast<size_t>(dst_i) * es,
              static_cast<const char*>(src.data) + static_cast<size_t>(src_i) * es, es);
}

// x [d_0, ..., d_{r-1}] -> y [d_perm[0], ..., d_perm[r-1]]
void permute(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const auto& perm = c.attrs.ints("perm");
  const auto xs = x.shape.strides();
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t rest = i, src = 0;
    for (int d = y.shape.rank() - 1; d >= 0; --d) {
      src += (rest % y.shape[d]) * xs[static_cast<size_t>(perm[static_cast<size_t>(d)])];
      rest /= y.shape[d];
    }
    copy_element(y, i, x, src);
  }
}

// Views a tensor as [outer, size along axis, inner].
struct AxisView {
  int64_t outer = 1, inner = 1;
  AxisView(const Shape& s, int axis) {
    for (int i = 0; i < axis; ++i) outer *= s[i];
    for (int i = axis + 1; i < s.rank(); ++i) inner *= s[i];
  }
};

// x [outer, L, inner] -> y [outer, end - start, inner] = x[:, start:end, :]
void slice(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const int64_t start = c.attrs.i("start"), len = y.shape[axis], size = x.shape[axis];
  const AxisView v(x.shape, axis);
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t j = 0; j < len; ++j)
      for (int64_t r = 0; r < v.inner; ++r)
        copy_element(y, (o * len + j) * v.inner + r, x, (o * size + start + j) * v.inner + r);
}

// dy [outer, len, inner] -> dx [outer, L, inner]: zeros, with dx[:, start:start+len, :] = dy
void slice_backward(const KernelCall& c) {
  const TensorRef &dy = c.in[0], &dx = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const int64_t start = c.attrs.i("start"), len = dy.shape[axis], size = dx.shape[axis];
  std::memset(dx.data, 0, dx.bytes());  // all-zero bytes are 0 in every dtype
  const AxisView v(dx.shape, axis);
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t j = 0; j < len; ++j)
      for (int64_t r = 0; r < v.inner; ++r)
        copy_element(dx, (o * size + start + j) * v.inner + r, dy, (o * len + j) * v.inner + r);
}

// xs_k [outer, L_k, inner] -> y [outer, sum L_k, inner]
void concat(const KernelCall& c) {
  const TensorRef& y = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const int64_t size = y.shape[axis];
  const AxisView v(y.shape, axis);
  int64_t offset = 0;
  for (const TensorRef& x : c.in) {
    const int64_t len = x.shape[axis];
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t j = 0; j < len; ++j)
        for (int64_t r = 0; r < v.inner; ++r)
          copy_element(y, (o * size + offset + j) * v.inner + r, x, (o * len + j) * v.inner + r);
    offset += len;
  }
}

// a [..., M, K] (or [..., K, M] if trans_a), b [K, N] (or [N, K] if trans_b; optionally with
// a's leading dims) -> y [..., M, N]; sums accumulate in double.
void matmul(const KernelCall& c) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const bool ta = c.attrs.i("trans_a") != 0, tb = c.attrs.i("trans_b") != 0;
  const int r = y.shape.rank();
  const int64_t m = y.shape[r - 2], n = y.shape[r - 1];
  const int64_t k = ta ? a.shape[r - 2] : a.shape[r - 1];
  int64_t batch = 1;
  for (int i = 0; i < r - 2; ++i) batch *= y.shape[i];
  const bool batched_b = b.shape.rank() > 2;
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pa = a.as<T>(), *pb = b.as<T>();
    for (int64_t p = 0; p < batch; ++p) {
      const T* ap = pa + p * m * k;
      const T* bp = pb + (batched_b ? p * k * n : 0);
      T* yp = y.as<T>() + p * m * n;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (int64_t q = 0; q < k; ++q) {
            const T av = ta ? ap[q * m + i] : ap[i * k + q];
            const T bv = tb ? bp[j * k + q] : bp[q * n + j];
            acc += static_cast<double>(av) * static_cast<double>(bv);
          }
          yp[i * n + j] = static_cast<T>(acc);
        }
    }
  });
}

int64_t checked_id(const char* op, const TensorRef& ids, int64_t i, int64_t vocab) {
  const int64_t id = read_index(ids, i);
  SOLO_CHECK(id >= 0 && id < vocab, op, ": id ", id, " at position ", i,
             " is outside [0, V) for V = ", vocab);
  return id;
}

// weight [V, D], ids [N...] -> y [N..., D]: y[n, :] = weight[ids[n], :]
void embedding(const KernelCall& c) {
  const TensorRef &w = c.in[0], &ids = c.in[1], &y = c.out[0];
  const int64_t vocab = w.shape[0], dim = w.shape[1];
  for (int64_t n = 0; n < ids.numel(); ++n) {
    const int64_t id = checked_id("Embedding", ids, n, vocab);
    for (int64_t d = 0; d < dim; ++d) copy_element(y, n * dim + d, w, id * dim + d);
  }
}

// ids [N...], dy [N..., D] -> dw [V, D]: zeros, then dw[ids[n], :] += dy[n, :] in order of n
void embedding_backward(const KernelCall& c) {
  const TensorRef &ids = c.in[0], &dy = c.in[1], &dw = c.out[0];
  const int64_t vocab = dw.shape[0], dim = dw.shape[1];
  dispatch_float(c.op, dw.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < dw.numel(); ++i) dw.as<T>()[i] = T(0);
    for (int64_t n = 0; n < ids.numel(); ++n) {
      const int64_t id = checked_id("EmbeddingBackward", ids, n, vocab);
      for (int64_t d = 0; d < dim; ++d) dw.as<T>()[id * dim + d] += dy.as<T>()[n * dim + d];
    }
  });
}

}  // namespace

void register_reference_movement_kernels(KernelTable& t) {
  t.set(OpKind::Permute, permute);
  t.set(OpKind::Slice, slice);
  t.set(OpKind::SliceBackward, slice_backward);
  t.set(OpKind::Concat, concat);
  t.set(OpKind::MatMul, matmul);
  t.set(OpKind::Embedding, embedding);
  t.set(OpKind::EmbeddingBackward, embedding_backward);
}

}  // namespace solo
