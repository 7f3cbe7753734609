#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::ValueId;

namespace {

std::vector<ValueId> reshape_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  return {ir::reshape(g, dout[0], g.shape(n.inputs[0]))};
}

// The gradient moves back through the inverse permutation.
std::vector<ValueId> permute_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const auto& perm = n.attrs.ints("perm");
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return {ir::permute(g, dout[0], inverse)};
}

std::vector<ValueId> slice_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  return {ir::slice_backward(g, dout[0], g.shape(n.inputs[0]), static_cast<int>(n.attrs.i("axis")),
                             n.attrs.i("start"))};
}

// SliceBackward is linear; its adjoint reads the window back out.
std::vector<ValueId> slice_backward_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const int axis = static_cast<int>(n.attrs.i("axis"));
  const int64_t start = n.attrs.i("start");
  return {ir::slice(g, dout[0], axis, start, start + g.shape(n.inputs[0])[axis])};
}

// Each input gets its own window of dy along the axis.
std::vector<ValueId> concat_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const int axis = static_cast<int>(n.attrs.i("axis"));
  std::vector<ValueId> din;
  int64_t offset = 0;
  for (ValueId x : n.inputs) {
    const int64_t len = g.shape(x)[axis];
    din.push_back(ir::slice(g, dout[0], axis, offset, offset + len));
    offset += len;
  }
  return din;
}

// y = op(a) op(b), op = optional transpose of the last two dims:
//   d op(a) = dy op(b)^T,  d op(b) = op(a)^T dy,  and dX = (d op(X))^T where X is transposed.
// A 2-D b shared by a batched a gets the sum of the per-batch gradients.
std::vector<ValueId> matmul_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const ValueId a = n.inputs[0], b = n.inputs[1], dy = dout[0];
  const bool ta = n.attrs.i("trans_a") != 0, tb = n.attrs.i("trans_b") != 0;
  const Shape sa = g.shape(a), sb = g.shape(b);  // copies: adding nodes moves values
  const bool shared_b = sb.rank() == 2 && sa.rank() > 2;

  ValueId da;
  if (!ta)
    da = ir::matmul(g, dy, b, false, !tb);  // dy op(b)^T
  else if (!shared_b)
    da = ir::matmul(g, b, dy, tb, true);  // op(b) dy^T
  else
    da = ir::transpose(g, ir::matmul(g, dy, b, false, !tb), -2, -1);

  ValueId db;
  if (shared_b && !ta) {
    // Fold the batch into M: a [B*M, K], dy [B*M, N]; the GEMM then sums over the batch.
    const ValueId a2 = ir::reshape(g, a, {-1, sa[sa.rank() - 1]});
    const ValueId dy2 = ir::reshape(g, dy, {-1, g.shape(dy)[g.shape(dy).rank() - 1]});
    db = tb ? ir::matmul(g, dy2, a2, true, false) : ir::matmul(g, a2, dy2, true, false);
  } else {
    db = tb ? ir::matmul(g, dy, a, true, ta) : ir::matmul(g, a, dy, !ta, false);
    if (shared_b) {  // a is [..., K, M] here and cannot be folded: sum the batched products
      std::vector<int64_t> lead(static_cast<size_t>(sa.rank() - 2));
      for (size_t i = 0; i < lead.size(); ++i) lead[i] = static_cast<int64_t>(i);
      db = ir::sum(g, db, lead);
    }
  }
  return {da, db};
}

std::vector<ValueId> embedding_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const ValueId weight = n.inputs[0], ids = n.inputs[1];
  return {ir::embedding_backward(g, ids, dout[0], g.shape(weight)[0]), kNoValue};
}

// EmbeddingBackward is linear in dy; its adjoint gathers the rows again.
std::vector<ValueId> embedding_backward_vjp(Graph& g, const Node& n,
                                            const std::vector<ValueId>& dout) {
  return {kNoValue, ir::embedding(g, dout[0], n.inputs[0])};
}

}  // namespace

void register_layout_vjps(VjpTable& t) {
  t.set(OpKind::Reshape, reshape_vjp);
  t.set(OpKind::Permute, permute_vjp);
  t.set(OpKind::Slice, slice_vjp);
  t.set(OpKind::SliceBackward, slice_backward_vjp);
  t.set(OpKind::Concat, concat_vjp);
  t.set(OpKind::MatMul, matmul_vjp);
  t.set(OpKind::Embedding, embedding_vjp);
  t.set(OpKind::EmbeddingBackward, embedding_backward_vjp);
}

}  // namespace solo::autograd
