// CPU kernels of the vocabulary-parallel ops (ir/ops.h): rank r (attr "rank", set by the
// executor) holds vocabulary entries [r Vn, (r+1) Vn). One OpenMP loop over independent rows
// (the weight gradient: over the block's rows, each thread owning whole rows); labels and ids
// are checked before any thread starts (a kernel cannot throw from a parallel loop).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/kernel_util.h"

namespace solo {
namespace {

using kernels::dispatch_float;
using kernels::read_index;

// This rank's block of the vocabulary: entries [offset, offset + size) of ranks * size.
struct VocabBlock {
  int64_t offset = 0, size = 0, vocab = 0;
  bool holds(int64_t id) const { return id >= offset && id < offset + size; }
};
VocabBlock vocab_block(const KernelCall& c, int64_t size) {
  const int64_t rank = c.attrs.i("rank"), ranks = c.attrs.i("ranks");
  SOLO_CHECK(rank >= 0 && rank < ranks, op_name(c.op), ": rank ", rank, " is outside [0, ", ranks,
             ")");
  return {rank * size, size, ranks * size};
}

void check_labels(const KernelCall& c, const TensorRef& labels, const VocabBlock& b) {
  const int64_t ignore = c.attrs.i("ignore_index");
  for (int64_t n = 0; n < labels.numel(); ++n) {
    const int64_t label = read_index(labels, n);
    SOLO_CHECK(label == ignore || (label >= 0 && label < b.vocab), op_name(c.op), ": label ", label,
               " at row ", n, " is outside [0, ", b.vocab, ") (V = ", b.vocab,
               ") and is not ignore_index ", ignore);
  }
}

void check_ids(const KernelCall& c, const TensorRef& ids, const VocabBlock& b) {
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const int64_t id = read_index(ids, i);
    SOLO_CHECK(id >= 0 && id < b.vocab, op_name(c.op), ": id ", id, " at position ", i,
               " is outside [0, V) for V = ", b.vocab);
  }
}

double read_float(const TensorRef& t, int64_t i) {
  return t.dtype == DType::F64 ? t.as<double>()[i] : double(t.as<float>()[i]);
}
void write_float(const TensorRef& t, int64_t i, double v) {
  if (t.dtype == DType::F64)
    t.as<double>()[i] = v;
  else
    t.as<float>()[i] = static_cast<float>(v);
}

// logits [N, Vn], labels [N] -> lse [N] (this block's), target [N] (label's logit or 0).
void vocab_shard_cross_entropy(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &lse = c.out[0], &target = c.out[1];
  const int64_t N = logits.shape[0], Vn = logits.shape[1], ignore = c.attrs.i("ignore_index");
  const VocabBlock b = vocab_block(c, Vn);
  check_labels(c, labels, b);
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const T* row = logits.as<T>() + n * Vn;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < Vn; ++j) mx = std::max(mx, row[j]);
      double s = 0;  // in double: V/n terms keep f32 accuracy
      for (int64_t j = 0; j < Vn; ++j) s += std::exp(double(row[j] - mx));
      const int64_t label = read_index(labels, n);
      write_float(lse, n, double(mx) + std::log(s));
      write_float(target, n, label != ignore && b.holds(label) ? double(row[label - b.offset]) : 0);
    }
  });
}

// logits [N, Vn], labels [N], lse [N], scale [] -> dlogits [N, Vn] = (exp(logits - lse) -
// onehot(label - offset)) * scale; ignored rows zero.
void vocab_shard_cross_entropy_backward(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &lse = c.in[2], &scale = c.in[3];
  const TensorRef& dlogits = c.out[0];
  const int64_t N = logits.shape[0], Vn = logits.shape[1], ignore = c.attrs.i("ignore_index");
  const VocabBlock b = vocab_block(c, Vn);
  check_labels(c, labels, b);
  const double k = read_float(scale, 0);
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = read_index(labels, n);
      const T* row = logits.as<T>() + n * Vn;
      T* out = dlogits.as<T>() + n * Vn;
      if (label == ignore) {
        std::fill_n(out, Vn, T(0));
        continue;
      }
      const T l = static_cast<T>(read_float(lse, n)), kt = static_cast<T>(k);
      for (int64_t j = 0; j < Vn; ++j) out[j] = std::exp(row[j] - l) * kt;
      if (b.holds(label)) out[label - b.offset] -= kt;
    }
  });
}

// weight [Vn, D], ids [N...] -> y [N..., D]: row id - offset for ids in the block, zeros else.
void vocab_shard_embedding(const KernelCall& c) {
  const TensorRef &w = c.in[0], &ids = c.in[1], &y = c.out[0];
  const VocabBlock b = vocab_block(c, w.shape[0]);
  check_ids(c, ids, b);
  const size_t row = static_cast<size_t>(w.shape[1]) * dtype_size(w.dtype);
  const auto* src = static_cast<const char*>(w.data);
  auto* dst = static_cast<char*>(y.data);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < ids.numel(); ++n) {
    const int64_t id = read_index(ids, n);
    char* out = dst + static_cast<size_t>(n) * row;
    if (b.holds(id))
      std::memcpy(out, src + static_cast<size_t>(id - b.offset) * row, row);
    else
      std::memset(out, 0, row);  // +0.0 in every float dtype
  }
}

// ids [N...], dy [N..., D] -> dw [Vn, D]: the ids in the block bucketed by row (a stable
// counting sort), then each thread owns whole rows of dw and adds in increasing n, the
// reference's order.
void vocab_shard_embedding_backward(const KernelCall& c) {
  const TensorRef &ids = c.in[0], &dy = c.in[1], &dw = c.out[0];
  const int64_t rows = dw.shape[0], dim = dw.shape[1], count = ids.numel();
  const VocabBlock b = vocab_block(c, rows);
  check_ids(c, ids, b);
  std::vector<int64_t> begin(static_cast<size_t>(rows) + 1, 0), order;
  for (int64_t n = 0; n < count; ++n) {
    const int64_t id = read_index(ids, n);
    if (b.holds(id)) ++begin[static_cast<size_t>(id - b.offset) + 1];
  }
  std::partial_sum(begin.begin(), begin.end(), begin.begin());
  order.resize(static_cast<size_t>(begin.back()));
  std::vector<int64_t> fill(begin.begin(), begin.end() - 1);
  for (int64_t n = 0; n < count; ++n) {
    const int64_t id = read_index(ids, n);
    if (b.holds(id)) order[static_cast<size_t>(fill[static_cast<size_t>(id - b.offset)]++)] = n;
  }
  dispatch_float(c.op, dw.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.as<T>();
    T* out = dw.as<T>();
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t v = 0; v < rows; ++v) {
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

void register_cpu_vocab_parallel_kernels(KernelTable& t) {
  t.set(OpKind::VocabShardCrossEntropy, vocab_shard_cross_entropy);
  t.set(OpKind::VocabShardCrossEntropyBackward, vocab_shard_cross_entropy_backward);
  t.set(OpKind::VocabShardEmbedding, vocab_shard_embedding);
  t.set(OpKind::VocabShardEmbeddingBackward, vocab_shard_embedding_backward);
}

}  // namespace solo
