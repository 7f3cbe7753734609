// CPU data-movement (permute, slice, concat...), matmul and lookup kernels. Data movement is done
// with memcpy of contiguous runs (after merging dims that stay adjacent), parallel over independent
// runs; MatMul is OpenBLAS GEMM; EmbeddingBackward buckets the ids by row so threads never share a
// row.
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <numeric>

#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/cpu/gemm_bf16.h"
#include "solo/backend/kernel_util.h"
#include "solo/backend/permute_plan.h"

namespace solo {
namespace {

using kernels::coalesce;
using kernels::Coalesced;

using kernels::dispatch_float;
using kernels::read_index;

// Below this many bytes a copy is not worth waking the thread team.
constexpr int64_t kParallelBytes = 1 << 15;

char* bytes_of(const TensorRef& t) {
  return static_cast<char*>(t.data);
}

// count blocks of `bytes` bytes: dst + i * dst_stride <- src + i * src_stride. Long blocks are
// split into pieces so that a few large blocks still spread over the threads.
void copy_blocks(char* dst, int64_t dst_stride, const char* src, int64_t src_stride, int64_t count,
                 int64_t bytes) {
  constexpr int64_t kPiece = 1 << 16;
  const int64_t pieces = std::max<int64_t>(1, (bytes + kPiece - 1) / kPiece);
#pragma omp parallel for schedule(static) if (count * bytes > kParallelBytes)
  for (int64_t t = 0; t < count * pieces; ++t) {
    const int64_t b = t / pieces, off = (t % pieces) * kPiece;
    const int64_t n = std::min(kPiece, bytes - off);
    if (n > 0)
      std::memcpy(dst + b * dst_stride + off, src + b * src_stride + off, static_cast<size_t>(n));
  }
}

// ---- Permute ----------------------------------------------------------------------------------

// Input offset (elements) of the start of output row `row`, the output viewed as
// [rows, last]: the output index is decomposed over dims 0..R-2.
int64_t row_offset(int64_t row, const std::vector<int64_t>& out_dims,
                   const std::vector<int64_t>& in_strides_by_out) {
  int64_t off = 0;
  for (size_t d = out_dims.size() - 1; d-- > 0;) {
    off += (row % out_dims[d]) * in_strides_by_out[d];
    row /= out_dims[d];
  }
  return off;
}

// x [batch, R, C] -> y [batch, C, R], in 32 x 32 tiles so reads and writes both stay in cache.
template <class E>
void transpose_last_two(const E* x, E* y, int64_t batch, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  const int64_t tr = (rows + kTile - 1) / kTile, tc = (cols + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (batch * rows * cols * int64_t(sizeof(E)) > \
                                              kParallelBytes)
  for (int64_t t = 0; t < batch * tr * tc; ++t) {
    const int64_t b = t / (tr * tc), r0 = (t / tc) % tr * kTile, c0 = t % tc * kTile;
    const E* xb = x + b * rows * cols;
    E* yb = y + b * rows * cols;
    const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t r = r0; r < r1; ++r) yb[c * rows + r] = xb[r * cols + c];
  }
}

// y [rows, last]: row o gathers `last` elements of x with stride `stride` from row_offset(o).
template <class E>
void gather_rows(const E* x, E* y, const std::vector<int64_t>& out_dims,
                 const std::vector<int64_t>& in_strides_by_out) {
  const int64_t last = out_dims.back(), stride = in_strides_by_out.back();
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < out_dims.size(); ++d) rows *= out_dims[d];
#pragma omp parallel for schedule(static) if (rows * last * int64_t(sizeof(E)) > kParallelBytes)
  for (int64_t o = 0; o < rows; ++o) {
    const E* src = x + row_offset(o, out_dims, in_strides_by_out);
    E* dst = y + o * last;
    for (int64_t j = 0; j < last; ++j) dst[j] = src[j * stride];
  }
}

template <class E>
void permute_typed(const TensorRef& x, const TensorRef& y, const Coalesced& c) {
  const size_t r = c.shape.size();
  const E* px = x.as<const E>();
  E* py = y.as<E>();
  std::vector<int64_t> in_strides(r), out_dims(r), strides_by_out(r);
  for (size_t i = r, acc = 1; i-- > 0;) {
    in_strides[i] = static_cast<int64_t>(acc);
    acc *= static_cast<size_t>(c.shape[i]);
  }
  for (size_t j = 0; j < r; ++j) {
    out_dims[j] = c.shape[static_cast<size_t>(c.perm[j])];
    strides_by_out[j] = in_strides[static_cast<size_t>(c.perm[j])];
  }
  if (c.perm[r - 1] == static_cast<int64_t>(r - 1)) {
    // The last dim stays last: copy contiguous rows of it.
    const int64_t last = out_dims[r - 1], rows = x.numel() / last;
    const auto row_bytes = static_cast<size_t>(last) * sizeof(E);
#pragma omp parallel for schedule(static) if (x.numel() * int64_t(sizeof(E)) > kParallelBytes)
    for (int64_t o = 0; o < rows; ++o)
      std::memcpy(py + o * last, px + row_offset(o, out_dims, strides_by_out), row_bytes);
    return;
  }
  bool swap_last_two =
      c.perm[r - 1] == static_cast<int64_t>(r - 2) && c.perm[r - 2] == static_cast<int64_t>(r - 1);
  for (size_t j = 0; j + 2 < r; ++j) swap_last_two &= c.perm[j] == static_cast<int64_t>(j);
  if (swap_last_two) {
    const int64_t rows = c.shape[r - 2], cols = c.shape[r - 1];
    transpose_last_two(px, py, x.numel() / (rows * cols), rows, cols);
    return;
  }
  gather_rows(px, py, out_dims, strides_by_out);
}

// x [d_0, ..., d_{r-1}] -> y [d_perm[0], ..., d_perm[r-1]], any dtype (moved by element size)
void permute(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  if (x.numel() == 0) return;
  const Coalesced co = coalesce(x.shape, c.attrs.ints("perm"));
  if (co.shape.size() <= 1) {  // the order of elements does not change
    copy_blocks(bytes_of(y), 0, bytes_of(x), 0, 1, static_cast<int64_t>(x.bytes()));
    return;
  }
  switch (dtype_size(x.dtype)) {
    case 1:
      permute_typed<uint8_t>(x, y, co);
      break;
    case 2:
      permute_typed<uint16_t>(x, y, co);
      break;
    case 4:
      permute_typed<uint32_t>(x, y, co);
      break;
    case 8:
      permute_typed<uint64_t>(x, y, co);
      break;
    default:
      SOLO_FAIL("Permute: unsupported element size ", dtype_size(x.dtype));
  }
}

// ---- Slice, SliceBackward, Concat ------------------------------------------------------------

// Bytes of one step along `axis` (the product of the later dims times the element size), and
// the number of blocks before it.
struct AxisBlocks {
  int64_t outer = 1, step = 0;
  AxisBlocks(const TensorRef& t, int axis) {
    int64_t inner = 1;
    for (int i = 0; i < axis; ++i) outer *= t.shape[i];
    for (int i = axis + 1; i < t.shape.rank(); ++i) inner *= t.shape[i];
    step = inner * static_cast<int64_t>(dtype_size(t.dtype));
  }
};

// x [outer, L, inner] -> y [outer, end - start, inner]: one contiguous block per outer index
void slice(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const int64_t start = c.attrs.i("start"), len = y.shape[axis], size = x.shape[axis];
  const AxisBlocks v(x, axis);
  copy_blocks(bytes_of(y), len * v.step, bytes_of(x) + start * v.step, size * v.step, v.outer,
              len * v.step);
}

// dy [outer, len, inner] -> dx [outer, L, inner]: per outer index, zeros before and after
// the window and dy inside it (each byte written once).
void slice_backward(const KernelCall& c) {
  const TensorRef &dy = c.in[0], &dx = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const int64_t start = c.attrs.i("start"), len = dy.shape[axis], size = dx.shape[axis];
  const AxisBlocks v(dx, axis);
  char* out = bytes_of(dx);
  const char* in = bytes_of(dy);
  const auto before = static_cast<size_t>(start * v.step),
             window = static_cast<size_t>(len * v.step),
             after = static_cast<size_t>((size - start - len) * v.step);
#pragma omp parallel for schedule(static) if (static_cast <int64_t>(dx.bytes()) > kParallelBytes)
  for (int64_t o = 0; o < v.outer; ++o) {
    char* row = out + o * size * v.step;
    std::memset(row, 0, before);
    std::memcpy(row + before, in + o * len * v.step, window);
    std::memset(row + before + window, 0, after);
  }
}

// xs_k [outer, L_k, inner] -> y [outer, sum L_k, inner]: each input is a strided block copy
void concat(const KernelCall& c) {
  const TensorRef& y = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const AxisBlocks v(y, axis);
  const int64_t size = y.shape[axis];
  int64_t offset = 0;
  for (const TensorRef& x : c.in) {
    const int64_t len = x.shape[axis];
    copy_blocks(bytes_of(y) + offset * v.step, size * v.step, bytes_of(x), len * v.step, v.outer,
                len * v.step);
    offset += len;
  }
}

// ---- MatMul ------------------------------------------------------------------------------------

void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, const float* a,
          blasint lda, const float* b, blasint ldb, float* c, blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc);
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, const double* a,
          blasint lda, const double* b, blasint ldb, double* c, blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

blasint blas_int(int64_t v) {
  SOLO_CHECK(v <= INT_MAX, "MatMul: dimension ", v, " is too large for BLAS");
  return static_cast<blasint>(v);
}

// a [batch, M, K] (or [batch, K, M] if trans_a), b [K, N] shared (or [N, K] if trans_b), or
// b [batch, K, N] -> y [batch, M, N]. OpenBLAS threads each GEMM.
void matmul(const KernelCall& c) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const bool ta = c.attrs.i("trans_a") != 0, tb = c.attrs.i("trans_b") != 0;
  const int r = y.shape.rank();
  const int64_t m = y.shape[r - 2], n = y.shape[r - 1], k = ta ? a.shape[r - 2] : a.shape[r - 1];
  const int64_t batch = m * n == 0 ? 0 : y.numel() / (m * n);
  const bool batched_b = b.shape.rank() > 2;
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (y.numel() == 0) return;
    if (k == 0) {  // an empty sum; BLAS may skip writing C
      std::fill_n(y.as<T>(), y.numel(), T(0));
      return;
    }
    const CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans,
                          opb = tb ? CblasTrans : CblasNoTrans;
    const blasint lda = blas_int(ta ? m : k), ldb = blas_int(tb ? k : n), ldc = blas_int(n);
    if (!batched_b && !ta) {
      // Rows of all batches are rows of one [batch*M, K] matrix: a single large GEMM.
      gemm(opa, opb, blas_int(batch * m), blas_int(n), blas_int(k), a.as<T>(), lda, b.as<T>(), ldb,
           y.as<T>(), ldc);
      return;
    }
    for (int64_t p = 0; p < batch; ++p)
      gemm(opa, opb, blas_int(m), blas_int(n), blas_int(k), a.as<T>() + p * m * k, lda,
           b.as<T>() + (batched_b ? p * k * n : 0), ldb, y.as<T>() + p * m * n, ldc);
  });
}

}  // namespace

// The same contract on bf16 a and b, y bf16 (or f32), without f32 copies of the operands.
bool matmul_half(const KernelCall& c) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  if (a.dtype != DType::BF16 || b.dtype != DType::BF16 ||
      (y.dtype != DType::BF16 && y.dtype != DType::F32) || !native_bf16_gemm_enabled())
    return false;
  const bool ta = c.attrs.i("trans_a") != 0, tb = c.attrs.i("trans_b") != 0;
  const int r = y.shape.rank();
  const int64_t m = y.shape[r - 2], n = y.shape[r - 1], k = ta ? a.shape[r - 2] : a.shape[r - 1];
  const int64_t batch = m * n == 0 ? 0 : y.numel() / (m * n);
  const bool batched_b = b.shape.rank() > 2;
  const Bf16Matrix mb{b.as<const bf16>(), tb ? k : n, tb, batched_b ? k * n : 0};
  if (!batched_b && !ta)  // rows of all batches are rows of one [batch*M, K] matrix
    gemm_bf16(1, batch * m, n, k, {a.as<const bf16>(), k, false, 0}, mb, y.data, y.dtype);
  else
    gemm_bf16(batch, m, n, k, {a.as<const bf16>(), ta ? m : k, ta, m * k}, mb, y.data, y.dtype);
  return true;
}

namespace {

// ---- Embedding -------------------------------------------------------------------------------

// Checks every id before any thread starts (a kernel cannot throw from inside a parallel loop).
void check_ids(const char* op, const TensorRef& ids, int64_t vocab) {
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const int64_t id = read_index(ids, i);
    SOLO_CHECK(id >= 0 && id < vocab, op, ": id ", id, " at position ", i,
               " is outside [0, V) for V = ", vocab);
  }
}

// weight [V, D], ids [N] -> y [N, D]: one row copy per id, any dtype
void embedding(const KernelCall& c) {
  const TensorRef &w = c.in[0], &ids = c.in[1], &y = c.out[0];
  const int64_t vocab = w.shape[0];
  check_ids("Embedding", ids, vocab);
  const int64_t row = w.shape[1] * static_cast<int64_t>(dtype_size(w.dtype));
#pragma omp parallel for schedule(static) if (static_cast <int64_t>(y.bytes()) > kParallelBytes)
  for (int64_t n = 0; n < ids.numel(); ++n)
    std::memcpy(bytes_of(y) + n * row, bytes_of(w) + read_index(ids, n) * row,
                static_cast<size_t>(row));
}

// ids [N], dy [N, D] -> dw [V, D], dw[v] = sum of dy[n] over ids[n] == v. The positions are
// bucketed by id (a stable counting sort), then each thread owns whole rows of dw: no races,
// and each row adds in increasing n, the same order as the reference.
void embedding_backward(const KernelCall& c) {
  const TensorRef &ids = c.in[0], &dy = c.in[1], &dw = c.out[0];
  const int64_t vocab = dw.shape[0], dim = dw.shape[1], count = ids.numel();
  check_ids("EmbeddingBackward", ids, vocab);
  std::vector<int64_t> begin(static_cast<size_t>(vocab) + 1, 0), order(static_cast<size_t>(count));
  for (int64_t n = 0; n < count; ++n) ++begin[static_cast<size_t>(read_index(ids, n)) + 1];
  std::partial_sum(begin.begin(), begin.end(), begin.begin());
  std::vector<int64_t> fill(begin.begin(), begin.end() - 1);
  for (int64_t n = 0; n < count; ++n)
    order[static_cast<size_t>(fill[static_cast<size_t>(read_index(ids, n))]++)] = n;
  dispatch_float(c.op, dw.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.as<T>();
    T* out = dw.as<T>();
#pragma omp parallel for schedule(dynamic, 16) if (vocab * dim + count * dim > kParallelBytes / 4)
    for (int64_t v = 0; v < vocab; ++v) {
      T* row = out + v * dim;
      std::fill_n(row, dim, T(0));
      for (int64_t q = begin[static_cast<size_t>(v)]; q < begin[static_cast<size_t>(v) + 1]; ++q) {
        const T* src = g + order[static_cast<size_t>(q)] * dim;
        for (int64_t d = 0; d < dim; ++d) row[d] += src[d];
      }
    }
  });
}

}  // namespace

void register_cpu_movement_kernels(KernelTable& t) {
  t.set(OpKind::Permute, permute);
  t.set(OpKind::Slice, slice);
  t.set(OpKind::SliceBackward, slice_backward);
  t.set(OpKind::Concat, concat);
  t.set(OpKind::MatMul, matmul);
  t.set(OpKind::Embedding, embedding);
  t.set(OpKind::EmbeddingBackward, embedding_backward);
}

}  // namespace solo
