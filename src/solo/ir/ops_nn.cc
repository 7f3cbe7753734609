// Builders of the fused nn ops: Softmax, RmsNorm, LayerNorm, Rope, CrossEntropy and their
// Backward ops. Each checks its operands and infers the output types; see ops.h.
#include <string>

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

namespace {

// x must be a float tensor of rank >= 1 (a row dimension to normalise over).
void check_float_rows(const char* op, const TensorType& x,
                      const std::vector<const TensorType*>& operands) {
  check_operands(is_floating(x.dtype), op, "expected a float tensor", operands);
  check_operands(x.shape.rank() >= 1, op, "expected a tensor of rank >= 1", operands);
}

// A per-feature parameter p [D] matching x [..., D] in size and dtype.
void check_feature_param(const char* op, const char* what, const TensorType& x, const TensorType& p,
                         const std::vector<const TensorType*>& operands) {
  check_operands(p.dtype == x.dtype, op, std::string(what) + " dtype differs from x", operands);
  check_operands(p.shape.rank() == 1 && p.shape[0] == x.shape[x.shape.rank() - 1], op,
                 std::string(what) + " must be [D] with D the last dim of x", operands);
}

// Normalises axis against x's rank; out of range throws naming the op and the operands.
int softmax_axis(const char* op, int axis, const std::vector<const TensorType*>& operands) {
  const int rank = operands[0]->shape.rank();
  check_operands(axis >= -rank && axis < rank, op,
                 "axis " + std::to_string(axis) + " is out of range", operands);
  return axis < 0 ? axis + rank : axis;
}

// CrossEntropy(+Backward): logits [N, V] float, labels [N] i32/i64.
void check_cross_entropy(const char* op, const TensorType& logits, const TensorType& labels,
                         const std::vector<const TensorType*>& operands) {
  check_operands(is_floating(logits.dtype), op, "logits must be a float tensor", operands);
  check_operands(labels.dtype == DType::I32 || labels.dtype == DType::I64, op,
                 "labels must be i32 or i64", operands);
  check_operands(logits.shape.rank() == 2, op, "logits must be [N, V]", operands);
  check_operands(labels.shape.rank() == 1 && labels.shape[0] == logits.shape[0], op,
                 "labels must be [N] with N the rows of logits", operands);
}

// The loss is f64 for f64 logits and f32 otherwise.
DType loss_dtype(DType logits) {
  return logits == DType::F64 ? DType::F64 : DType::F32;
}

}  // namespace

ValueId softmax(Graph& g, ValueId x, int axis) {
  const TensorType& tx = g.type(x);
  check_float_rows("Softmax", tx, {&tx});
  const int a = softmax_axis("Softmax", axis, {&tx});
  return g.add(OpKind::Softmax, {x}, tx, Attrs().set("axis", a));
}

ValueId softmax_backward(Graph& g, ValueId y, ValueId dy, int axis) {
  const TensorType &ty = g.type(y), &tdy = g.type(dy);
  check_float_rows("SoftmaxBackward", ty, {&ty, &tdy});
  check_operands(ty.dtype == tdy.dtype && ty.shape == tdy.shape, "SoftmaxBackward",
                 "y and dy must have the same shape and dtype", {&ty, &tdy});
  const int a = softmax_axis("SoftmaxBackward", axis, {&ty, &tdy});
  return g.add(OpKind::SoftmaxBackward, {y, dy}, ty, Attrs().set("axis", a));
}

ValueId rms_norm(Graph& g, ValueId x, ValueId w, double eps) {
  const TensorType &tx = g.type(x), &tw = g.type(w);
  check_float_rows("RmsNorm", tx, {&tx, &tw});
  check_feature_param("RmsNorm", "w", tx, tw, {&tx, &tw});
  SOLO_CHECK(eps >= 0, "RmsNorm: eps must be >= 0, got ", eps);
  return g.add(OpKind::RmsNorm, {x, w}, tx, Attrs().set("eps", eps));
}

std::vector<ValueId> rms_norm_backward(Graph& g, ValueId x, ValueId w, ValueId dy, double eps) {
  const TensorType &tx = g.type(x), &tw = g.type(w), &tdy = g.type(dy);
  check_float_rows("RmsNormBackward", tx, {&tx, &tw, &tdy});
  check_feature_param("RmsNormBackward", "w", tx, tw, {&tx, &tw, &tdy});
  check_operands(tdy.dtype == tx.dtype && tdy.shape == tx.shape, "RmsNormBackward",
                 "dy must have the shape and dtype of x", {&tx, &tw, &tdy});
  return g.add_node(OpKind::RmsNormBackward, {x, w, dy}, {tx, tw}, Attrs().set("eps", eps));
}

ValueId layer_norm(Graph& g, ValueId x, ValueId w, ValueId b, double eps) {
  const TensorType &tx = g.type(x), &tw = g.type(w), &tb = g.type(b);
  check_float_rows("LayerNorm", tx, {&tx, &tw, &tb});
  check_feature_param("LayerNorm", "w", tx, tw, {&tx, &tw, &tb});
  check_feature_param("LayerNorm", "b", tx, tb, {&tx, &tw, &tb});
  SOLO_CHECK(eps >= 0, "LayerNorm: eps must be >= 0, got ", eps);
  return g.add(OpKind::LayerNorm, {x, w, b}, tx, Attrs().set("eps", eps));
}

std::vector<ValueId> layer_norm_backward(Graph& g, ValueId x, ValueId w, ValueId dy, double eps) {
  const TensorType &tx = g.type(x), &tw = g.type(w), &tdy = g.type(dy);
  check_float_rows("LayerNormBackward", tx, {&tx, &tw, &tdy});
  check_feature_param("LayerNormBackward", "w", tx, tw, {&tx, &tw, &tdy});
  check_operands(tdy.dtype == tx.dtype && tdy.shape == tx.shape, "LayerNormBackward",
                 "dy must have the shape and dtype of x", {&tx, &tw, &tdy});
  return g.add_node(OpKind::LayerNormBackward, {x, w, dy}, {tx, tw, tw}, Attrs().set("eps", eps));
}

ValueId rope(Graph& g, ValueId x, const RopeScaling& scaling, bool inverse) {
  const TensorType& tx = g.type(x);
  check_operands(is_floating(tx.dtype), "Rope", "expected a float tensor", {&tx});
  check_operands(tx.shape.rank() == 4, "Rope", "expected x [B, T, H, D]", {&tx});
  check_operands(tx.shape[3] % 2 == 0, "Rope", "head dim D must be even", {&tx});
  SOLO_CHECK(scaling.theta > 0, "Rope: theta must be > 0, got ", scaling.theta);
  SOLO_CHECK(scaling.type == RopeType::Default || scaling.factor > 0,
             "Rope: rope scaling factor must be > 0, got ", scaling.factor);
  SOLO_CHECK(scaling.type != RopeType::Dynamic || scaling.original_max_position_embeddings > 0,
             "Rope: dynamic scaling needs original_max_position_embeddings > 0, got ",
             scaling.original_max_position_embeddings);
  Attrs attrs;
  set_rope_attrs(attrs, scaling);
  return g.add(OpKind::Rope, {x}, tx, attrs.set("inverse", inverse));
}

ValueId rope(Graph& g, ValueId x, double theta, bool inverse) {
  return rope(g, x, RopeScaling{.theta = theta}, inverse);
}

ValueId cross_entropy(Graph& g, ValueId logits, ValueId labels, int64_t ignore_index) {
  const TensorType &tl = g.type(logits), &ty = g.type(labels);
  check_cross_entropy("CrossEntropy", tl, ty, {&tl, &ty});
  return g.add(OpKind::CrossEntropy, {logits, labels}, {Shape{}, loss_dtype(tl.dtype)},
               Attrs().set("ignore_index", ignore_index));
}

ValueId cross_entropy_backward(Graph& g, ValueId logits, ValueId labels, ValueId dloss,
                               int64_t ignore_index) {
  const TensorType &tl = g.type(logits), &ty = g.type(labels), &td = g.type(dloss);
  check_cross_entropy("CrossEntropyBackward", tl, ty, {&tl, &ty, &td});
  check_operands(td.shape.rank() == 0 && td.dtype == loss_dtype(tl.dtype), "CrossEntropyBackward",
                 "dloss must be a scalar of the loss dtype", {&tl, &ty, &td});
  return g.add(OpKind::CrossEntropyBackward, {logits, labels, dloss}, tl,
               Attrs().set("ignore_index", ignore_index));
}

}  // namespace solo::ir
