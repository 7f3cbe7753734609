// CUDA kernels of the vocabulary-parallel ops (ir/ops.h): rank r (attr "rank", set by the
// executor) holds vocabulary entries [r Vn, (r+1) Vn). Rows are reduced by one block each in
// fp32 (bf16 is only the storage type), as CrossEntropy's are. As on the other GPU kernels, a
// label or id outside the vocabulary is not raised (a kernel cannot throw): such a row counts
// as out of this block.
#include <cmath>
#include <cstdint>

#include "solo/backend/cuda/cuda_util.cuh"

namespace solo {
namespace {

using cuda::blocks_for;
using cuda::check_launch;
using cuda::dispatch_f32_bf16;
using cuda::from_float;
using cuda::stream_of;
using cuda::to_float;

constexpr int kThreads = 256;

// Threads of a row's block: a power of two in [32, 1024], about 4 elements each.
int row_threads(int64_t n) {
  int t = 32;
  while (t < 1024 && t * 4 < n) t *= 2;
  return t;
}

// This rank's block of the vocabulary: entries [offset, offset + size).
struct VocabBlock {
  int64_t offset = 0, size = 0;
};
VocabBlock vocab_block(const KernelCall& c, int64_t size) {
  const int64_t rank = c.attrs.i("rank"), ranks = c.attrs.i("ranks");
  SOLO_CHECK(rank >= 0 && rank < ranks, op_name(c.op), ": rank ", rank, " is outside [0, ", ranks,
             ")");
  return {rank * size, size};
}

__device__ __forceinline__ int64_t load_index(const void* ids, bool is64, int64_t n) {
  return is64 ? static_cast<const int64_t*>(ids)[n]
              : static_cast<int64_t>(static_cast<const int32_t*>(ids)[n]);
}

// Max and sum over the block (blockDim.x a multiple of 32); every thread gets the result.
__device__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// logits [N, Vn], labels [N] -> lse [N] (of this block's row), target [N] (the label's logit
// when it is in the block, else 0). One block per row.
template <class T>
__global__ void shard_cross_entropy_kernel(const T* __restrict__ logits, const void* labels,
                                           bool labels64, float* __restrict__ lse,
                                           float* __restrict__ target, int64_t Vn, int64_t offset,
                                           int64_t ignore) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  const T* row = logits + n * Vn;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < Vn; j += blockDim.x) m = fmaxf(m, to_float(row[j]));
  m = block_max(m, red);
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < Vn; j += blockDim.x) s += expf(to_float(row[j]) - m);
  s = block_sum(s, red);
  if (threadIdx.x == 0) {
    const int64_t label = load_index(labels, labels64, n) - offset;
    lse[n] = m + logf(s);
    target[n] = label + offset != ignore && label >= 0 && label < Vn ? to_float(row[label]) : 0.f;
  }
}

void vocab_shard_cross_entropy(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &lse = c.out[0], &target = c.out[1];
  const int64_t N = logits.shape[0], Vn = logits.shape[1];
  const VocabBlock b = vocab_block(c, Vn);
  SOLO_CHECK(labels.dtype == DType::I32 || labels.dtype == DType::I64, op_name(c.op),
             ": labels must be i32 or i64 on cuda, got ", dtype_name(labels.dtype));
  if (N == 0) return;
  dispatch_f32_bf16(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    shard_cross_entropy_kernel<T><<<static_cast<unsigned>(N), row_threads(Vn), 0, stream_of(c)>>>(
        logits.as<T>(), labels.data, labels.dtype == DType::I64, lse.as<float>(),
        target.as<float>(), Vn, b.offset, c.attrs.i("ignore_index"));
  });
  check_launch("VocabShardCrossEntropy");
}

// logits [N, Vn], labels [N], lse [N], scale [] -> dlogits [N, Vn] = (exp(logits - lse) -
// onehot(label - offset)) * scale; ignored rows zero. Elementwise over the block.
template <class T>
__global__ void shard_cross_entropy_bwd_kernel(const T* __restrict__ logits, const void* labels,
                                               bool labels64, const float* __restrict__ lse,
                                               const float* __restrict__ scale,
                                               T* __restrict__ dlogits, int64_t N, int64_t Vn,
                                               int64_t offset, int64_t ignore) {
  const int64_t total = N * Vn;
  const float k = *scale;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / Vn, j = i % Vn;
    const int64_t label = load_index(labels, labels64, n);
    if (label == ignore) {
      dlogits[i] = from_float<T>(0.f);
      continue;
    }
    const float p = expf(to_float(logits[i]) - lse[n]);
    dlogits[i] = from_float<T>((label - offset == j ? p - 1.f : p) * k);
  }
}

void vocab_shard_cross_entropy_backward(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &lse = c.in[2], &scale = c.in[3];
  const TensorRef& dlogits = c.out[0];
  const int64_t N = logits.shape[0], Vn = logits.shape[1];
  const VocabBlock b = vocab_block(c, Vn);
  SOLO_CHECK(labels.dtype == DType::I32 || labels.dtype == DType::I64, op_name(c.op),
             ": labels must be i32 or i64 on cuda, got ", dtype_name(labels.dtype));
  SOLO_CHECK(lse.dtype == DType::F32 && scale.dtype == DType::F32, op_name(c.op),
             ": lse and scale must be f32 on cuda");
  if (N * Vn == 0) return;
  dispatch_f32_bf16(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    shard_cross_entropy_bwd_kernel<T><<<blocks_for(N * Vn, kThreads), kThreads, 0, stream_of(c)>>>(
        logits.as<T>(), labels.data, labels.dtype == DType::I64, lse.as<float>(), scale.as<float>(),
        dlogits.as<T>(), N, Vn, b.offset, c.attrs.i("ignore_index"));
  });
  check_launch("VocabShardCrossEntropyBackward");
}

// weight [Vn, units], ids [N] -> y [N, units]: row id - offset, zeros for ids outside the
// block. U: an element of the weight's size (any dtype moves as its bytes).
template <class U>
__global__ void shard_embedding_kernel(const U* w, const void* ids, bool ids64, U* y, int64_t n_ids,
                                       int64_t rows, int64_t units, int64_t offset) {
  const int64_t total = n_ids * units;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = load_index(ids, ids64, i / units) - offset;
    if (id >= 0 && id < rows) {
      y[i] = w[id * units + i % units];
    } else {
      U zero;
      memset(&zero, 0, sizeof(U));
      y[i] = zero;
    }
  }
}

void vocab_shard_embedding(const KernelCall& c) {
  const TensorRef &w = c.in[0], &ids = c.in[1], &y = c.out[0];
  if (y.numel() == 0) return;
  const VocabBlock b = vocab_block(c, w.shape[0]);
  SOLO_CHECK(ids.dtype == DType::I32 || ids.dtype == DType::I64, op_name(c.op),
             ": ids must be i32 or i64, got ", dtype_name(ids.dtype));
  const bool ids64 = ids.dtype == DType::I64;
  const cudaStream_t s = stream_of(c);
  const unsigned blocks = blocks_for(y.numel(), kThreads);
  switch (dtype_size(w.dtype)) {
    case 2:
      shard_embedding_kernel<<<blocks, kThreads, 0, s>>>(w.as<const uint16_t>(), ids.data, ids64,
                                                         y.as<uint16_t>(), ids.numel(), w.shape[0],
                                                         w.shape[1], b.offset);
      break;
    case 4:
      shard_embedding_kernel<<<blocks, kThreads, 0, s>>>(w.as<const uint32_t>(), ids.data, ids64,
                                                         y.as<uint32_t>(), ids.numel(), w.shape[0],
                                                         w.shape[1], b.offset);
      break;
    case 8:
      shard_embedding_kernel<<<blocks, kThreads, 0, s>>>(w.as<const uint64_t>(), ids.data, ids64,
                                                         y.as<uint64_t>(), ids.numel(), w.shape[0],
                                                         w.shape[1], b.offset);
      break;
    default:
      SOLO_FAIL(op_name(c.op), ": dtype ", dtype_name(w.dtype), " is not supported on cuda");
  }
  check_launch("VocabShardEmbedding");
}

// ids [N], dy [N, D] -> acc [Vn, D] += the dy rows of ids in the block (acc zeroed before).
template <class T>
__global__ void shard_embedding_bwd_kernel(const void* ids, bool ids64, const T* dy, float* acc,
                                           int64_t n_ids, int64_t rows, int64_t dim,
                                           int64_t offset) {
  const int64_t total = n_ids * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = load_index(ids, ids64, i / dim) - offset;
    if (id >= 0 && id < rows) atomicAdd(acc + id * dim + i % dim, to_float(dy[i]));
  }
}

// acc [n] f32 -> y [n] bf16
__global__ void round_to_bf16_kernel(const float* acc, __nv_bfloat16* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(acc[i]);
}

// f32 adds atomically into dw itself; bf16 into an f32 scratch, rounded once at the end.
void vocab_shard_embedding_backward(const KernelCall& c) {
  const TensorRef &ids = c.in[0], &dy = c.in[1], &dw = c.out[0];
  if (dw.numel() == 0) return;
  const VocabBlock b = vocab_block(c, dw.shape[0]);
  SOLO_CHECK(ids.dtype == DType::I32 || ids.dtype == DType::I64, op_name(c.op),
             ": ids must be i32 or i64, got ", dtype_name(ids.dtype));
  const cudaStream_t s = stream_of(c);
  const int64_t rows = dw.shape[0], dim = dw.shape[1], total = ids.numel() * dim;
  const bool ids64 = ids.dtype == DType::I64;
  dispatch_f32_bf16(c.op, dw.dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr bool f32 = sizeof(T) == sizeof(float);
    void* acc = dw.data;
    const size_t bytes = static_cast<size_t>(dw.numel()) * sizeof(float);
    if (!f32) SOLO_CUDA_CHECK(cudaMallocAsync(&acc, bytes, s));
    SOLO_CUDA_CHECK(cudaMemsetAsync(acc, 0, bytes, s));
    if (total > 0)
      shard_embedding_bwd_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
          ids.data, ids64, dy.as<const T>(), static_cast<float*>(acc), ids.numel(), rows, dim,
          b.offset);
    if (!f32) {
      round_to_bf16_kernel<<<blocks_for(dw.numel(), kThreads), kThreads, 0, s>>>(
          static_cast<const float*>(acc), dw.as<__nv_bfloat16>(), dw.numel());
      SOLO_CUDA_CHECK(cudaFreeAsync(acc, s));
    }
  });
  check_launch("VocabShardEmbeddingBackward");
}

}  // namespace

void register_cuda_vocab_parallel_kernels(KernelTable& t) {
  t.set(OpKind::VocabShardCrossEntropy, vocab_shard_cross_entropy);
  t.set(OpKind::VocabShardCrossEntropyBackward, vocab_shard_cross_entropy_backward);
  t.set(OpKind::VocabShardEmbedding, vocab_shard_embedding);
  t.set(OpKind::VocabShardEmbeddingBackward, vocab_shard_embedding_backward);
}

}  // namespace solo
