#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::ValueId;

namespace {

// d(a + b) = (dy, dy), each summed back to its operand's shape.
std::vector<ValueId> add_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const ValueId dy = dout[0];
  return {ir::sum_to(g, dy, g.shape(n.inputs[0])), ir::sum_to(g, dy, g.shape(n.inputs[1]))};
}

// d(a * b) = (dy * b, dy * a), summed back to each operand's shape.
std::vector<ValueId> mul_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const ValueId a = n.inputs[0], b = n.inputs[1], dy = dout[0];
  return {ir::sum_to(g, ir::mul(g, dy, b), g.shape(a)), ir::sum_to(g, ir::mul(g, dy, a), g.shape(b))};
}

// The gradient of a sum is dy broadcast back over the reduced axes.
std::vector<ValueId> sum_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  const Shape& in = g.shape(n.inputs[0]);
  std::vector<int64_t> kept = in.dims();
  for (int64_t a : n.attrs.ints("axes")) kept[static_cast<size_t>(a)] = 1;
  return {ir::broadcast_to(g, ir::reshape(g, dout[0], Shape(kept)), in)};
}

std::vector<ValueId> broadcast_to_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  return {ir::sum_to(g, dout[0], g.shape(n.inputs[0]))};
}

}  // namespace

void register_elementwise_vjps(VjpTable& t) {
  t.set(OpKind::Add, add_vjp);
  t.set(OpKind::Mul, mul_vjp);
  t.set(OpKind::Sum, sum_vjp);
  t.set(OpKind::BroadcastTo, broadcast_to_vjp);
}

}  // namespace solo::autograd
