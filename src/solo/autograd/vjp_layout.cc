#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

using ir::Graph;
using ir::Node;
using ir::ValueId;

namespace {

std::vector<ValueId> reshape_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  return {ir::reshape(g, dout[0], g.shape(n.inputs[0]))};
}

}  // namespace

void register_layout_vjps(VjpTable& t) { t.set(OpKind::Reshape, reshape_vjp); }

}  // namespace solo::autograd
