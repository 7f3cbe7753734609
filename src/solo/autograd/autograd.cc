#include "solo/autograd/autograd.h"

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

using ir::kNoValue;
using ir::NodeId;
using ir::ValueId;

VjpTable::VjpTable() {
  register_elementwise_vjps(*this);
  register_layout_vjps(*this);
  register_nn_vjps(*this);
  register_attention_vjps(*this);
  register_collective_vjps(*this);
}

const VjpTable& vjp_table() {
  static const VjpTable table;  // immutable after construction; safe to share
  return table;
}

std::vector<ValueId> gradients(ir::Graph& g, ValueId loss, const std::vector<ValueId>& wrt,
                               ValueId seed) {
  SOLO_CHECK(is_floating(g.dtype(loss)), "backward: the loss must be a float tensor, got ",
             dtype_name(g.dtype(loss)));
  const NodeId last = g.value(loss).producer;
  const auto n_nodes = static_cast<size_t>(last) + 1;

  // Nodes on a path from some w in wrt to the loss.
  std::vector<bool> from_wrt(n_nodes, false);
  std::vector<bool> wants(static_cast<size_t>(g.num_values()), false);
  for (ValueId w : wrt) wants[static_cast<size_t>(w)] = true;
  for (NodeId n = 0; n <= last; ++n) {
    const ir::Node& node = g.node(n);
    bool reached = false;
    for (ValueId v : node.outputs) reached |= wants[static_cast<size_t>(v)];
    if (!node.no_grad)
      for (ValueId in : node.inputs) reached |= wants[static_cast<size_t>(in)];
    if (!reached) continue;
    from_wrt[static_cast<size_t>(n)] = true;
    for (ValueId v : node.outputs)
      if (is_floating(g.dtype(v))) wants[static_cast<size_t>(v)] = true;
  }

  ir::NoGradGuard no_grad;  // backward nodes are not differentiated again
  std::vector<ValueId> grad(static_cast<size_t>(g.num_values()), kNoValue);
  auto accumulate = [&](ValueId v, ValueId d) {
    ValueId& slot = grad[static_cast<size_t>(v)];
    slot = slot == kNoValue ? d : ir::add(g, slot, d);
  };
  if (seed == kNoValue) seed = ir::full(g, g.shape(loss), g.dtype(loss), 1.0);
  SOLO_CHECK(g.shape(seed) == g.shape(loss), "backward: gradient seed shape ", g.shape(seed).str(),
             " differs from the loss shape ", g.shape(loss).str());
  grad[static_cast<size_t>(loss)] = seed;

  for (NodeId n = last; n >= 0; --n) {
    if (!from_wrt[static_cast<size_t>(n)]) continue;
    const ir::Node& node = g.node(n);  // stable: the graph never moves its nodes
    if (node.no_grad || node.op == OpKind::Input) continue;
    std::vector<ValueId> dout;
    bool any = false;
    for (ValueId v : node.outputs) {
      dout.push_back(grad[static_cast<size_t>(v)]);
      any |= dout.back() != kNoValue;
    }
    if (!any) continue;
    // A node's backward belongs to its module scope (a pipeline stage is cut by scopes).
    ir::OriginGuard origin(g.scope_of(n), /*no_grad=*/true);
    const VjpRule rule = vjp_table().get(node.op);
    SOLO_CHECK(rule != nullptr, "backward: op ", op_name(node.op),
               " has no gradient rule; wrap its use in a no-grad scope or add a VJP rule");
    const std::vector<ValueId> din = rule(g, node, dout);
    SOLO_CHECK(din.size() == node.inputs.size(), "backward: the rule of ", op_name(node.op),
               " returned ", din.size(), " gradients for ", node.inputs.size(), " inputs");
    for (size_t i = 0; i < din.size(); ++i) {
      const ValueId in = node.inputs[i];
      if (din[i] == kNoValue || !wants[static_cast<size_t>(in)]) continue;
      SOLO_CHECK(g.shape(din[i]) == g.shape(in), "backward: the rule of ", op_name(node.op),
                 " gave input ", i, " a gradient of shape ", g.shape(din[i]).str(),
                 " for a value of shape ", g.shape(in).str());
      accumulate(in, din[i]);
    }
  }

  std::vector<ValueId> result;
  for (ValueId w : wrt) result.push_back(grad[static_cast<size_t>(w)]);
  return result;
}

}  // namespace solo::autograd
