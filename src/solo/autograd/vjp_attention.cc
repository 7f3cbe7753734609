#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::ValueId;

namespace {

// Attention (q, k, v[, key_mask]) -> {out, lse}. Only `out` is differentiable: the gradient
// of lse is ignored (lse is a by-product saved for the backward, not a model output). The
// fused backward recomputes the probabilities from q, k and the saved lse. key_mask gets none.
std::vector<ValueId> attention_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const size_t n_in = n.inputs.size();
  std::vector<ValueId> din(n_in, kNoValue);
  if (dout[0] == kNoValue) return din;
  const ValueId mask = n_in > 3 ? n.inputs[3] : kNoValue;
  const auto d = ir::attention_backward(g, n.inputs[0], n.inputs[1], n.inputs[2], mask,
                                        n.outputs[0], n.outputs[1], dout[0], n.attrs.f("scale"),
                                        n.attrs.i("causal") != 0, n.attrs.i_or("window", 0));
  din[0] = d[0];
  din[1] = d[1];
  din[2] = d[2];
  return din;
}

}  // namespace

void register_attention_vjps(VjpTable& t) {
  t.set(OpKind::Attention, attention_vjp);
}

}  // namespace solo::autograd
