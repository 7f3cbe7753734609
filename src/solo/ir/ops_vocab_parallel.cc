// Builders of the vocabulary-parallel ops: each rank's block of the cross-entropy's logits
// and of the embedding's weight; see ops.h.
#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

namespace {

Attrs shard_attrs(const char* op, int64_t ranks, int64_t group) {
  SOLO_CHECK(ranks >= 1, op, ": ranks = ", ranks, "; a group has at least one rank");
  SOLO_CHECK(group >= 0, op, ": communicator group ", group, " is negative");
  return Attrs().set("ranks", ranks).set("group", group);
}

bool is_index(DType t) {
  return t == DType::I32 || t == DType::I64;
}

// The loss is f64 for f64 logits and f32 otherwise (as CrossEntropy's).
DType loss_dtype(DType logits) {
  return logits == DType::F64 ? DType::F64 : DType::F32;
}

void check_rows(const char* op, const TensorType& logits, const TensorType& labels,
                const std::vector<const TensorType*>& operands) {
  check_operands(is_floating(logits.dtype), op, "logits must be a float tensor", operands);
  check_operands(is_index(labels.dtype), op, "labels must be i32 or i64", operands);
  check_operands(logits.shape.rank() == 2, op, "logits must be [N, Vn]", operands);
  check_operands(labels.shape.rank() == 1 && labels.shape[0] == logits.shape[0], op,
                 "labels must be [N] with N the rows of logits", operands);
}

}  // namespace

std::vector<ValueId> vocab_shard_cross_entropy(Graph& g, ValueId logits, ValueId labels,
                                               int64_t ranks, int64_t ignore_index, int64_t group) {
  const char* op = "VocabShardCrossEntropy";
  const TensorType &tl = g.type(logits), &ty = g.type(labels);
  check_rows(op, tl, ty, {&tl, &ty});
  const TensorType row{Shape{tl.shape[0]}, loss_dtype(tl.dtype)};
  return g.add_node(OpKind::VocabShardCrossEntropy, {logits, labels}, {row, row},
                    shard_attrs(op, ranks, group).set("ignore_index", ignore_index));
}

ValueId vocab_shard_cross_entropy_backward(Graph& g, ValueId logits, ValueId labels, ValueId lse,
                                           ValueId scale, int64_t ranks, int64_t ignore_index,
                                           int64_t group) {
  const char* op = "VocabShardCrossEntropyBackward";
  const TensorType &tl = g.type(logits), &ty = g.type(labels), &te = g.type(lse),
                   &ts = g.type(scale);
  const std::vector<const TensorType*> operands{&tl, &ty, &te, &ts};
  check_rows(op, tl, ty, operands);
  const DType dt = loss_dtype(tl.dtype);
  check_operands(te.dtype == dt && te.shape == Shape{tl.shape[0]}, op,
                 "lse must be [N] of the loss dtype", operands);
  check_operands(ts.dtype == dt && ts.shape.rank() == 0, op,
                 "scale must be a scalar of the loss dtype", operands);
  return g.add(OpKind::VocabShardCrossEntropyBackward, {logits, labels, lse, scale}, tl,
               shard_attrs(op, ranks, group).set("ignore_index", ignore_index));
}

ValueId vocab_shard_embedding(Graph& g, ValueId weight, ValueId ids, int64_t ranks, int64_t group) {
  const char* op = "VocabShardEmbedding";
  const TensorType &tw = g.type(weight), &ti = g.type(ids);
  check_operands(tw.shape.rank() == 2, op, "weight must be [Vn, D]", {&tw, &ti});
  check_operands(is_index(ti.dtype), op, "ids must be i32 or i64", {&tw, &ti});
  std::vector<int64_t> out = ti.shape.dims();
  out.push_back(tw.shape[1]);
  return g.add(OpKind::VocabShardEmbedding, {weight, ids}, {Shape(out), tw.dtype},
               shard_attrs(op, ranks, group));
}

ValueId vocab_shard_embedding_backward(Graph& g, ValueId ids, ValueId dy, int64_t block_rows,
                                       int64_t ranks, int64_t group) {
  const char* op = "VocabShardEmbeddingBackward";
  const TensorType &ti = g.type(ids), &td = g.type(dy);
  check_operands(is_index(ti.dtype), op, "ids must be i32 or i64", {&ti, &td});
  check_operands(is_floating(td.dtype), op, "dy must be float", {&ti, &td});
  bool ok = td.shape.rank() == ti.shape.rank() + 1;
  for (int i = 0; ok && i < ti.shape.rank(); ++i) ok = td.shape[i] == ti.shape[i];
  check_operands(ok, op, "dy must be [..., D] where ids is [...]", {&ti, &td});
  SOLO_CHECK(block_rows > 0, op, ": the block's rows must be positive, got ", block_rows);
  const Shape out{block_rows, td.shape[td.shape.rank() - 1]};
  return g.add(OpKind::VocabShardEmbeddingBackward, {ids, dy}, {out, td.dtype},
               shard_attrs(op, ranks, group).set("num_embeddings", block_rows));
}

}  // namespace solo::ir
