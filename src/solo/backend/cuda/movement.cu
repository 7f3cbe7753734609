// CUDA data-movement, matmul and lookup kernels. Permute coalesces dims as the cpu kernel does,
// then runs a 32 x 32 shared-memory tile transpose when only the last two dims swap, or a gather
// (output index -> input offset, up to 8 dims) moving the widest unit that the rows allow.
// Slice, SliceBackward and Concat are strided 2-D copies on the stream. MatMul is cuBLASLt
// with f32 accumulation (no TF32). Embedding copies rows; its backward scatter-adds with
// atomics (float sums, so the order, and the last bits, may vary run to run).
#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

#include "solo/backend/cuda/cuda_util.cuh"
#include "solo/backend/permute_plan.h"

namespace solo {
namespace {

using cuda::blocks_for;
using cuda::check_launch;
using cuda::stream_of;

constexpr int kThreads = 256;
constexpr int kMaxDims = 8;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Largest power of two (<= 16) dividing the address and `bytes`: the widest unit a copy of
// rows of `bytes` bytes at these addresses can move.
size_t unit_bytes(int64_t bytes, std::initializer_list<const void*> ptrs) {
  size_t u = 16;
  auto fits = [&](size_t v) {
    if (bytes % static_cast<int64_t>(v) != 0) return false;
    for (const void* p : ptrs)
      if (reinterpret_cast<uintptr_t>(p) % v != 0) return false;
    return true;
  };
  while (u > 1 && !fits(u)) u /= 2;
  return u;
}

// f(U{}) with an element type of `size` bytes (16 = uint4).
template <class F>
void dispatch_unit(size_t size, F&& f) {
  switch (size) {
    case 1:
      f(uint8_t{});
      return;
    case 2:
      f(uint16_t{});
      return;
    case 4:
      f(uint32_t{});
      return;
    case 8:
      f(uint64_t{});
      return;
    case 16:
      f(uint4{});
      return;
    default:
      SOLO_FAIL("cuda: unsupported element size ", size);
  }
}

// ---- Permute ----------------------------------------------------------------------------------

// The permutation planning (size-1 dims dropped, adjacent runs merged) is shared with cpu.
using kernels::coalesce;
using kernels::Coalesced;

// Output dims and, for each, the input stride (elements) that one step along it moves.
struct PermPlan {
  int rank;
  int64_t out_dims[kMaxDims];
  int64_t in_strides[kMaxDims];
};

// y [n] (output dims of p) = x[offset(i)]
template <class I, class U>
__global__ void permute_gather(const U* x, U* y, I n, PermPlan p) {
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I rem = i, src = 0;
    for (int d = p.rank - 1; d >= 0; --d) {
      const I dim = static_cast<I>(p.out_dims[d]);
      src += (rem % dim) * static_cast<I>(p.in_strides[d]);
      rem /= dim;
    }
    y[i] = x[src];
  }
}

// x [B, R, C] -> y [B, C, R] through a 32 x 33 shared tile (the pad avoids bank conflicts):
// both the reads of x and the writes of y are coalesced. block (32, 8), grid (C/32, R/32, *).
template <class E>
__global__ void transpose_tiles(const E* x, E* y, int64_t B, int64_t R, int64_t C) {
  __shared__ E tile[32][33];
  const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    const E* xb = x + b * R * C;
    E* yb = y + b * R * C;
    for (int j = threadIdx.y; j < 32; j += blockDim.y) {
      const int64_t r = r0 + j, c = c0 + threadIdx.x;
      if (r < R && c < C) tile[j][threadIdx.x] = xb[r * C + c];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < 32; j += blockDim.y) {
      const int64_t c = c0 + j, r = r0 + threadIdx.x;
      if (r < R && c < C) yb[c * R + r] = tile[threadIdx.x][j];
    }
    __syncthreads();
  }
}

// x [d_0, ..., d_{r-1}] -> y [d_perm[0], ..., d_perm[r-1]], any dtype (moved by element size)
void permute(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  if (x.numel() == 0) return;
  const cudaStream_t s = stream_of(c);
  Coalesced co = coalesce(x.shape, c.attrs.ints("perm"));
  const size_t r = co.shape.size();
  if (r <= 1) {  // the order of elements does not change
    SOLO_CUDA_CHECK(cudaMemcpyAsync(y.data, x.data, x.bytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  size_t esize = dtype_size(x.dtype);
  bool swap_last_two = co.perm[r - 1] == static_cast<int64_t>(r - 2) &&
                       co.perm[r - 2] == static_cast<int64_t>(r - 1);
  for (size_t j = 0; j + 2 < r; ++j) swap_last_two &= co.perm[j] == static_cast<int64_t>(j);
  const int64_t rows = co.shape[r - 2], cols = co.shape[r - 1];
  if (swap_last_two && ceil_div(rows, 32) <= 65535) {
    const int64_t batch = x.numel() / (rows * cols);
    const dim3 grid(static_cast<unsigned>(ceil_div(cols, 32)),
                    static_cast<unsigned>(ceil_div(rows, 32)),
                    static_cast<unsigned>(std::min<int64_t>(batch, 65535)));
    dispatch_unit(esize, [&](auto zero) {
      using E = decltype(zero);
      transpose_tiles<E>
          <<<grid, dim3(32, 8), 0, s>>>(x.as<const E>(), y.as<E>(), batch, rows, cols);
    });
    check_launch("Permute");
    return;
  }
  if (co.perm[r - 1] == static_cast<int64_t>(r - 1)) {
    // The last dim stays last: move whole rows in the widest unit they allow.
    const int64_t row_bytes = co.shape[r - 1] * static_cast<int64_t>(esize);
    const size_t u = unit_bytes(row_bytes, {x.data, y.data});
    co.shape[r - 1] = row_bytes / static_cast<int64_t>(u);
    esize = u;
  }
  SOLO_CHECK(r <= kMaxDims, "Permute: more than ", kMaxDims, " non-mergeable dims on cuda for ",
             x.shape.str());
  PermPlan p{};
  p.rank = static_cast<int>(r);
  std::vector<int64_t> in_strides(r);
  for (size_t i = r, acc = 1; i-- > 0;) {
    in_strides[i] = static_cast<int64_t>(acc);
    acc *= static_cast<size_t>(co.shape[i]);
  }
  int64_t n = 1;
  for (size_t j = 0; j < r; ++j) {
    p.out_dims[j] = co.shape[static_cast<size_t>(co.perm[j])];
    p.in_strides[j] = in_strides[static_cast<size_t>(co.perm[j])];
    n *= p.out_dims[j];
  }
  dispatch_unit(esize, [&](auto zero) {
    using U = decltype(zero);
    if (n < (int64_t{1} << 31))
      permute_gather<uint32_t><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
          x.as<const U>(), y.as<U>(), static_cast<uint32_t>(n), p);
    else
      permute_gather<int64_t>
          <<<blocks_for(n, kThreads), kThreads, 0, s>>>(x.as<const U>(), y.as<U>(), n, p);
  });
  check_launch("Permute");
}

// ---- Slice, SliceBackward, Concat ------------------------------------------------------------

// Bytes of one step along `axis` (later dims times the element size), and the number of
// blocks before it.
struct AxisBlocks {
  int64_t outer = 1, step = 0;
  AxisBlocks(const TensorRef& t, int axis) {
    int64_t inner = 1;
    for (int i = 0; i < axis; ++i) outer *= t.shape[i];
    for (int i = axis + 1; i < t.shape.rank(); ++i) inner *= t.shape[i];
    step = inner * static_cast<int64_t>(dtype_size(t.dtype));
  }
};

// `rows` blocks of `width` bytes: dst + i * dpitch <- src + i * spitch, on the stream.
void copy_rows(const KernelCall& c, void* dst, int64_t dpitch, const void* src, int64_t spitch,
               int64_t width, int64_t rows) {
  if (width == 0 || rows == 0) return;
  const cudaStream_t s = stream_of(c);
  if (rows == 1 || (dpitch == width && spitch == width)) {
    SOLO_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, static_cast<size_t>(width * rows), cudaMemcpyDeviceToDevice, s));
    return;
  }
  if (std::max(dpitch, spitch) > INT32_MAX) {  // beyond cudaMemcpy2D's pitch limit: row by row
    for (int64_t r = 0; r < rows; ++r)
      SOLO_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + r * dpitch,
                                      static_cast<const char*>(src) + r * spitch,
                                      static_cast<size_t>(width), cudaMemcpyDeviceToDevice, s));
    return;
  }
  SOLO_CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<size_t>(dpitch), src,
                                    static_cast<size_t>(spitch), static_cast<size_t>(width),
                                    static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, s));
}

// x [outer, L, inner] -> y [outer, end - start, inner]
void slice(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const int64_t start = c.attrs.i("start"), len = y.shape[axis], size = x.shape[axis];
  const AxisBlocks v(x, axis);
  copy_rows(c, y.data, len * v.step, static_cast<const char*>(x.data) + start * v.step,
            size * v.step, len * v.step, v.outer);
}

// dy [outer, len, inner] -> dx [outer, L, inner]: zeros, then the window copied in
void slice_backward(const KernelCall& c) {
  const TensorRef &dy = c.in[0], &dx = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const int64_t start = c.attrs.i("start"), len = dy.shape[axis], size = dx.shape[axis];
  if (dx.numel() == 0) return;
  // All-zero bytes are 0 in every dtype.
  SOLO_CUDA_CHECK(cudaMemsetAsync(dx.data, 0, dx.bytes(), stream_of(c)));
  const AxisBlocks v(dx, axis);
  copy_rows(c, static_cast<char*>(dx.data) + start * v.step, size * v.step, dy.data, len * v.step,
            len * v.step, v.outer);
}

// xs_k [outer, L_k, inner] -> y [outer, sum L_k, inner]: one strided copy per input
void concat(const KernelCall& c) {
  const TensorRef& y = c.out[0];
  const int axis = static_cast<int>(c.attrs.i("axis"));
  const AxisBlocks v(y, axis);
  const int64_t size = y.shape[axis];
  int64_t offset = 0;
  for (const TensorRef& x : c.in) {
    const int64_t len = x.shape[axis];
    copy_rows(c, static_cast<char*>(y.data) + offset * v.step, size * v.step, x.data, len * v.step,
              len * v.step, v.outer);
    offset += len;
  }
}

// ---- MatMul ------------------------------------------------------------------------------------

// Throws naming the GEMM when a cuBLAS call fails.
#define SOLO_CUBLAS_CHECK(expr, what)                                                      \
  do {                                                                                     \
    const cublasStatus_t st_ = (expr);                                                     \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                      \
      SOLO_FAIL("MatMul: cuBLASLt ", #expr, " failed with status ", static_cast<int>(st_), \
                " for ", what());                                                          \
  } while (0)

// Everything a cuBLASLt call depends on apart from the pointers: column-major sizes (m, n, k)
// after the operand swap, the row-major transposes, batch count and strides, the dtype, and
// the alignment the chosen algorithm may assume. (One device per process: the algorithm is not
// keyed by device or handle, and descriptors do not depend on the handle.)
using GemmKey =
    std::tuple<int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;

struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool naive = false;  // no cuBLASLt algorithm: use naive_gemm
};

// Descriptors and algorithms per key. A process-wide memo guarded by a mutex: entries are
// immutable once built and never freed (a few per distinct shape), so sharing them between
// backends and threads is safe.
std::mutex gemm_cache_mutex;
std::map<GemmKey, GemmPlan> gemm_cache;

// Largest power of two (<= 256) dividing every address (and every batch stride in bytes).
int alignment_of(std::initializer_list<uintptr_t> values) {
  int a = 256;
  for (uintptr_t v : values)
    while (a > 1 && v % static_cast<uintptr_t>(a) != 0) a /= 2;
  return a;
}

// Fallback when cuBLASLt offers no algorithm (e.g. an unusual alignment): one thread per
// output, accumulating in f32 (f64 for f64). y [batch, M, N]; a, b as in gemm() below.
template <class T>
__global__ void naive_gemm(const T* a, const T* b, T* y, bool ta, bool tb, int64_t M, int64_t N,
                           int64_t K, int64_t batch, int64_t stride_a, int64_t stride_b,
                           int64_t stride_y) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t total = batch * M * N;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < total;
       o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = o / (M * N), i = o / N % M, j = o % N;
    const T* ap = a + p * stride_a;
    const T* bp = b + p * stride_b;
    A acc = 0;
    for (int64_t q = 0; q < K; ++q) {
      const A av = static_cast<A>(ta ? ap[q * M + i] : ap[i * K + q]);
      const A bv = static_cast<A>(tb ? bp[j * K + q] : bp[q * N + j]);
      acc += av * bv;
    }
    y[p * stride_y + i * N + j] = static_cast<T>(acc);
  }
}

// Row-major y [batch, M, N] = op(a) [batch, M, K] op(b) [batch, K, N] via the column-major
// identity y^T = op(b)^T op(a)^T: cuBLASLt's A is our b, its B our a, (m, n, k) = (N, M, K).
// Strides are in elements (0: b shared by every batch).
void gemm(const KernelCall& c, DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
          int64_t batch, const void* a, int64_t stride_a, const void* b, int64_t stride_b, void* y,
          int64_t stride_y) {
  const CudaContext& ctx = cuda::context_of(c);
  auto handle = static_cast<cublasLtHandle_t>(ctx.cublaslt);
  const auto es = static_cast<uintptr_t>(dtype_size(dt));
  const int align =
      alignment_of({reinterpret_cast<uintptr_t>(a), reinterpret_cast<uintptr_t>(b),
                    reinterpret_cast<uintptr_t>(y), static_cast<uintptr_t>(stride_a) * es,
                    static_cast<uintptr_t>(stride_b) * es, static_cast<uintptr_t>(stride_y) * es});
  auto what = [&] {
    return "a [" + std::to_string(batch) + ", " + std::to_string(ta ? K : M) + ", " +
           std::to_string(ta ? M : K) + "], b [" + std::to_string(tb ? N : K) + ", " +
           std::to_string(tb ? K : N) + "] (trans_a " + std::to_string(ta) + ", trans_b " +
           std::to_string(tb) + ", " + dtype_name(dt) + ")";
  };
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t scale_type;
  switch (dt) {
    case DType::F32:
      type = CUDA_R_32F, compute = CUBLAS_COMPUTE_32F, scale_type = CUDA_R_32F;  // no TF32
      break;
    case DType::BF16:
      type = CUDA_R_16BF, compute = CUBLAS_COMPUTE_32F, scale_type = CUDA_R_32F;
      break;
    case DType::F64:
      type = CUDA_R_64F, compute = CUBLAS_COMPUTE_64F, scale_type = CUDA_R_64F;
      break;
    default:
      SOLO_FAIL("MatMul: dtype ", dtype_name(dt), " is not supported on cuda");
  }
  const GemmKey key{
      static_cast<int>(dt), ta, tb, M, N, K, batch, stride_a, stride_b, stride_y, align};
  GemmPlan plan;
  {
    std::lock_guard<std::mutex> lock(gemm_cache_mutex);
    auto it = gemm_cache.find(key);
    if (it != gemm_cache.end()) {
      plan = it->second;
    } else {
      SOLO_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, compute, scale_type), what);
      // Our b is cuBLASLt's A: row-major [K, N] is column-major N x K (ld N), used as is;
      // row-major [N, K] is column-major K x N (ld K), transposed.
      const cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
      const cublasOperation_t op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
      SOLO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                       &op_a, sizeof(op_a)),
                        what);
      SOLO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                       &op_b, sizeof(op_b)),
                        what);
      auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
      SOLO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.la, type, tb ? u(K) : u(N),
                                                   tb ? u(N) : u(K), tb ? K : N),
                        what);
      // Our a is cuBLASLt's B: row-major [M, K] is column-major K x M (ld K), used as is;
      // row-major [K, M] is column-major M x K (ld M), transposed.
      SOLO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.lb, type, ta ? u(M) : u(K),
                                                   ta ? u(K) : u(M), ta ? M : K),
                        what);
      // y row-major [M, N] is column-major N x M (ld N).
      SOLO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.lc, type, u(N), u(M), N), what);
      if (batch > 1) {
        const auto count = static_cast<int32_t>(batch);
        const std::pair<cublasLtMatrixLayout_t, int64_t> layouts[] = {
            {plan.la, stride_b}, {plan.lb, stride_a}, {plan.lc, stride_y}};
        for (const auto& [layout, stride] : layouts) {
          SOLO_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
                                layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)),
                            what);
          SOLO_CUBLAS_CHECK(
              cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                               &stride, sizeof(stride)),
              what);
        }
      }
      cublasLtMatmulPreference_t pref = nullptr;
      SOLO_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref), what);
      const uint64_t ws = ctx.workspace_bytes;
      const auto al = static_cast<uint32_t>(align);
      cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
      for (auto attr :
           {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        if (st == CUBLAS_STATUS_SUCCESS)
          st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.la, plan.lb, plan.lc, plan.lc,
                                            pref, 1, &result, &found);
      cublasLtMatmulPreferenceDestroy(pref);
      if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0))
        plan.naive = true;
      else
        SOLO_CUBLAS_CHECK(st, what);
      plan.algo = result.algo;
      gemm_cache.emplace(key, plan);
    }
  }
  if (plan.naive) {
    const int64_t total = batch * M * N;
    auto run = [&](auto zero) {
      using T = decltype(zero);
      naive_gemm<T><<<blocks_for(total, kThreads), kThreads, 0, stream_of(c)>>>(
          static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), ta, tb, M, N, K,
          batch, stride_a, stride_b, stride_y);
    };
    if (dt == DType::F32)
      run(float{});
    else if (dt == DType::BF16)
      run(__nv_bfloat16{});
    else
      run(double{});
    check_launch("MatMul");
    return;
  }
  const double one64 = 1.0, zero64 = 0.0;
  const float one32 = 1.f, zero32 = 0.f;
  const void* alpha = dt == DType::F64 ? static_cast<const void*>(&one64) : &one32;
  const void* beta = dt == DType::F64 ? static_cast<const void*>(&zero64) : &zero32;
  SOLO_CUBLAS_CHECK(
      cublasLtMatmul(handle, plan.desc, alpha, b, plan.la, a, plan.lb, beta, y, plan.lc, y, plan.lc,
                     &plan.algo, ctx.workspace, ctx.workspace_bytes, stream_of(c)),
      what);
}

// a [..., M, K] ([..., K, M] if trans_a), b [K, N] ([N, K] if trans_b) shared, or batched with
// a's leading dims -> y [..., M, N]
void matmul(const KernelCall& c) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const bool ta = c.attrs.i("trans_a") != 0, tb = c.attrs.i("trans_b") != 0;
  const int r = y.shape.rank();
  const int64_t m = y.shape[r - 2], n = y.shape[r - 1], k = ta ? a.shape[r - 2] : a.shape[r - 1];
  if (y.numel() == 0) return;
  if (k == 0) {  // an empty sum
    SOLO_CUDA_CHECK(cudaMemsetAsync(y.data, 0, y.bytes(), stream_of(c)));
    return;
  }
  const int64_t batch = y.numel() / (m * n);
  const bool batched_b = b.shape.rank() > 2;
  if (!batched_b && !ta) {  // rows of all batches form one [batch*M, K] matrix: one GEMM
    gemm(c, y.dtype, ta, tb, batch * m, n, k, 1, a.data, 0, b.data, 0, y.data, 0);
  } else if (batched_b) {
    gemm(c, y.dtype, ta, tb, m, n, k, batch, a.data, m * k, b.data, k * n, y.data, m * n);
  } else {
    // Transposed a with a shared b (rare: only a VJP of it): one GEMM per batch.
    const auto es = static_cast<int64_t>(dtype_size(y.dtype));
    for (int64_t p = 0; p < batch; ++p)
      gemm(c, y.dtype, ta, tb, m, n, k, 1, static_cast<const char*>(a.data) + p * m * k * es, 0,
           b.data, 0, static_cast<char*>(y.data) + p * m * n * es, 0);
  }
}

// ---- Embedding -------------------------------------------------------------------------------

// weight [V, row units], ids [N] -> y [N, row units]. Ids outside [0, V) give a zero row: the
// cpu backend raises, but a kernel cannot throw and a host-side check would need a sync, so
// the GPU skips them.
template <class Id, class U>
__global__ void embedding_kernel(const U* w, const Id* ids, U* y, int64_t n_ids, int64_t vocab,
                                 int64_t units) {
  const int64_t total = n_ids * units;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / units, j = i % units;
    const auto id = static_cast<int64_t>(ids[row]);
    if (id >= 0 && id < vocab) {
      y[i] = w[id * units + j];
    } else {
      U zero;
      memset(&zero, 0, sizeof(U));
      y[i] = zero;
    }
  }
}

// Calls f(Id{}) for the id dtype.
template <class F>
void dispatch_ids(OpKind op, DType dt, F&& f) {
  switch (dt) {
    case DType::I32:
      f(int32_t{});
      return;
    case DType::I64:
      f(int64_t{});
      return;
    default:
      SOLO_FAIL(op_name(op), ": ids must be i32 or i64, got ", dtype_name(dt));
  }
}

void embedding(const KernelCall& c) {
  const TensorRef &w = c.in[0], &ids = c.in[1], &y = c.out[0];
  if (y.numel() == 0) return;
  const int64_t vocab = w.shape[0];
  const int64_t row_bytes = w.shape[1] * static_cast<int64_t>(dtype_size(w.dtype));
  const size_t u = unit_bytes(row_bytes, {w.data, y.data});
  const int64_t units = row_bytes / static_cast<int64_t>(u);
  dispatch_ids(c.op, ids.dtype, [&](auto id_zero) {
    using Id = decltype(id_zero);
    dispatch_unit(u, [&](auto zero) {
      using U = decltype(zero);
      embedding_kernel<<<blocks_for(ids.numel() * units, kThreads), kThreads, 0, stream_of(c)>>>(
          w.as<const U>(), ids.as<const Id>(), y.as<U>(), ids.numel(), vocab, units);
    });
  });
  check_launch("Embedding");
}

__device__ __forceinline__ float widen(float v) {
  return v;
}
__device__ __forceinline__ float widen(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ double widen(double v) {
  return v;
}

// ids [N], dy [N, D] -> acc [V, D] += dy rows (acc zeroed before). Out-of-range ids are
// skipped (see embedding_kernel).
template <class Id, class T, class A>
__global__ void embedding_backward_kernel(const Id* ids, const T* dy, A* acc, int64_t n_ids,
                                          int64_t vocab, int64_t dim) {
  const int64_t total = n_ids * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / dim, d = i % dim;
    const auto id = static_cast<int64_t>(ids[row]);
    if (id >= 0 && id < vocab) atomicAdd(acc + id * dim + d, static_cast<A>(widen(dy[i])));
  }
}

// acc [n] f32 -> y [n] bf16
__global__ void to_bf16_kernel(const float* acc, __nv_bfloat16* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(acc[i]);
}

// ids [N], dy [N, D] -> dw [V, D]: f32/f64 add atomically into dw itself; bf16 adds into an
// f32 scratch [V, D] and rounds once at the end.
void embedding_backward(const KernelCall& c) {
  const TensorRef &ids = c.in[0], &dy = c.in[1], &dw = c.out[0];
  const int64_t vocab = dw.shape[0], dim = dw.shape[1];
  if (dw.numel() == 0) return;
  const cudaStream_t s = stream_of(c);
  const int64_t total = ids.numel() * dim;
  auto scatter = [&](auto t_zero, auto* acc) {
    using T = decltype(t_zero);
    if (total == 0) return;
    dispatch_ids(c.op, ids.dtype, [&](auto id_zero) {
      using Id = decltype(id_zero);
      embedding_backward_kernel<<<blocks_for(total, kThreads), kThreads, 0, s>>>(
          ids.as<const Id>(), dy.as<const T>(), acc, ids.numel(), vocab, dim);
    });
    check_launch("EmbeddingBackward");
  };
  switch (dw.dtype) {
    case DType::F32:
      SOLO_CUDA_CHECK(cudaMemsetAsync(dw.data, 0, dw.bytes(), s));
      scatter(float{}, dw.as<float>());
      return;
    case DType::F64:
      SOLO_CUDA_CHECK(cudaMemsetAsync(dw.data, 0, dw.bytes(), s));
      scatter(double{}, dw.as<double>());
      return;
    case DType::BF16: {
      void* acc = nullptr;
      const size_t bytes = static_cast<size_t>(dw.numel()) * sizeof(float);
      SOLO_CUDA_CHECK(cudaMallocAsync(&acc, bytes, s));
      SOLO_CUDA_CHECK(cudaMemsetAsync(acc, 0, bytes, s));
      scatter(__nv_bfloat16{}, static_cast<float*>(acc));
      to_bf16_kernel<<<blocks_for(dw.numel(), kThreads), kThreads, 0, s>>>(
          static_cast<const float*>(acc), dw.as<__nv_bfloat16>(), dw.numel());
      check_launch("EmbeddingBackward");
      SOLO_CUDA_CHECK(cudaFreeAsync(acc, s));
      return;
    }
    default:
      SOLO_FAIL("EmbeddingBackward: dtype ", dtype_name(dw.dtype), " is not supported on cuda");
  }
}

}  // namespace

void register_cuda_movement_kernels(KernelTable& t) {
  t.set(OpKind::Permute, permute);
  t.set(OpKind::Slice, slice);
  t.set(OpKind::SliceBackward, slice_backward);
  t.set(OpKind::Concat, concat);
  t.set(OpKind::MatMul, matmul);
  t.set(OpKind::Embedding, embedding);
  t.set(OpKind::EmbeddingBackward, embedding_backward);
}

}  // namespace solo
