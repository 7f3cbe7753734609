// Naive reference kernels of the vocabulary-parallel ops (ir/ops.h): rank r holds vocabulary
// entries [r Vn, (r+1) Vn), r from attr "rank" (set by the executor). Plain loops, sums in
// double; the oracle for the other backends.
#include <cmath>
#include <cstring>
#include <limits>

#include "solo/backend/kernel_util.h"
#include "solo/backend/reference/reference_backend.h"

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

// Throws unless label is ignore_index or in [0, V) of the whole vocabulary.
void check_label(OpKind op, int64_t label, int64_t row, const VocabBlock& b, int64_t ignore) {
  SOLO_CHECK(label == ignore || (label >= 0 && label < b.vocab), op_name(op), ": label ", label,
             " at row ", row, " is outside [0, ", b.vocab, ") (V = ", b.vocab,
             ") and is not ignore_index ", ignore);
}

template <class T>
void store(const TensorRef& t, int64_t i, double v) {
  t.as<T>()[i] = static_cast<T>(v);
}

// logits [N, Vn], labels [N] -> lse [N] = log sum_j exp(logits[n, j]), target [N] = logits[n,
// label - offset] for a label in this block, else 0.
void vocab_shard_cross_entropy(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &lse = c.out[0], &target = c.out[1];
  const int64_t N = logits.shape[0], Vn = logits.shape[1], ignore = c.attrs.i("ignore_index");
  const VocabBlock b = vocab_block(c, Vn);
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = read_index(labels, n);
      check_label(c.op, label, n, b, ignore);
      const T* row = logits.as<T>() + n * Vn;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < Vn; ++j) mx = std::max(mx, double(row[j]));
      double s = 0;
      for (int64_t j = 0; j < Vn; ++j) s += std::exp(double(row[j]) - mx);
      const double t = label != ignore && b.holds(label) ? double(row[label - b.offset]) : 0.0;
      if (lse.dtype == DType::F64) {
        store<double>(lse, n, mx + std::log(s));
        store<double>(target, n, t);
      } else {
        store<float>(lse, n, mx + std::log(s));
        store<float>(target, n, t);
      }
    }
  });
}

double read_float(const TensorRef& t, int64_t i) {
  return t.dtype == DType::F64 ? t.as<double>()[i] : double(t.as<float>()[i]);
}

// logits [N, Vn], labels [N], lse [N], scale [] -> dlogits [N, Vn] = (exp(logits - lse) -
// onehot(label - offset)) * scale; ignored rows zero.
void vocab_shard_cross_entropy_backward(const KernelCall& c) {
  const TensorRef &logits = c.in[0], &labels = c.in[1], &lse = c.in[2], &scale = c.in[3];
  const TensorRef& dlogits = c.out[0];
  const int64_t N = logits.shape[0], Vn = logits.shape[1], ignore = c.attrs.i("ignore_index");
  const VocabBlock b = vocab_block(c, Vn);
  const double k = read_float(scale, 0);
  dispatch_float(c.op, logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = read_index(labels, n);
      check_label(c.op, label, n, b, ignore);
      const T* row = logits.as<T>() + n * Vn;
      T* out = dlogits.as<T>() + n * Vn;
      const double l = read_float(lse, n);
      for (int64_t j = 0; j < Vn; ++j) {
        const double onehot = label == b.offset + j ? 1.0 : 0.0;
        out[j] =
            label == ignore ? T(0) : static_cast<T>((std::exp(double(row[j]) - l) - onehot) * k);
      }
    }
  });
}

// Throws unless id is in [0, V) of the whole vocabulary.
void check_id(OpKind op, int64_t id, int64_t i, const VocabBlock& b) {
  SOLO_CHECK(id >= 0 && id < b.vocab, op_name(op), ": id ", id, " at position ", i,
             " is outside [0, V) for V = ", b.vocab);
}

// weight [Vn, D], ids [N...] -> y [N..., D]: weight[id - offset] for ids in the block, else 0.
// Any dtype: rows are copied as bytes.
void vocab_shard_embedding(const KernelCall& c) {
  const TensorRef &w = c.in[0], &ids = c.in[1], &y = c.out[0];
  const VocabBlock b = vocab_block(c, w.shape[0]);
  const size_t row = static_cast<size_t>(w.shape[1]) * dtype_size(w.dtype);
  for (int64_t n = 0; n < ids.numel(); ++n) {
    const int64_t id = read_index(ids, n);
    check_id(c.op, id, n, b);
    char* dst = static_cast<char*>(y.data) + static_cast<size_t>(n) * row;
    if (b.holds(id))
      std::memcpy(dst, static_cast<const char*>(w.data) + static_cast<size_t>(id - b.offset) * row,
                  row);
    else
      std::memset(dst, 0, row);  // +0.0 in every float dtype
  }
}

// ids [N...], dy [N..., D] -> dw [Vn, D]: zeros, then dw[id - offset] += dy[n] in order of n
// for the ids in the block.
void vocab_shard_embedding_backward(const KernelCall& c) {
  const TensorRef &ids = c.in[0], &dy = c.in[1], &dw = c.out[0];
  const int64_t dim = dw.shape[1];
  const VocabBlock b = vocab_block(c, dw.shape[0]);
  dispatch_float(c.op, dw.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < dw.numel(); ++i) dw.as<T>()[i] = T(0);
    for (int64_t n = 0; n < ids.numel(); ++n) {
      const int64_t id = read_index(ids, n);
      check_id(c.op, id, n, b);
      if (!b.holds(id)) continue;
      for (int64_t d = 0; d < dim; ++d)
        dw.as<T>()[(id - b.offset) * dim + d] += dy.as<T>()[n * dim + d];
    }
  });
}

}  // namespace

void register_reference_vocab_parallel_kernels(KernelTable& t) {
  t.set(OpKind::VocabShardCrossEntropy, vocab_shard_cross_entropy);
  t.set(OpKind::VocabShardCrossEntropyBackward, vocab_shard_cross_entropy_backward);
  t.set(OpKind::VocabShardEmbedding, vocab_shard_embedding);
  t.set(OpKind::VocabShardEmbeddingBackward, vocab_shard_embedding_backward);
}

}  // namespace solo
