// Reverse-mode autodiff on the graph IR: backward nodes are appended to the same graph, so
// the step graph holds forward, backward and (later) the optimizer update.
#pragma once
#include <array>
#include <vector>

#include "solo/ir/graph.h"

namespace solo::autograd {

// Appends the nodes computing d(loss)/d(w) for each w in `wrt`; returns the gradient values
// in the same order (kNoValue where w does not influence loss). `seed` is d(loss)/d(loss),
// ones when kNoValue. Nodes marked no_grad and integer values stop the gradient.
std::vector<ir::ValueId> gradients(ir::Graph& g, ir::ValueId loss,
                                   const std::vector<ir::ValueId>& wrt,
                                   ir::ValueId seed = ir::kNoValue);

// A VJP rule: given the node and the gradient of each of its outputs (kNoValue
// for an output with no gradient), returns the gradient of each input (kNoValue for none).
using VjpRule = std::vector<ir::ValueId> (*)(ir::Graph& g, const ir::Node& node,
                                             const std::vector<ir::ValueId>& dout);

class VjpTable {
 public:
  VjpTable();
  void set(OpKind op, VjpRule r) { rules_[static_cast<size_t>(op)] = r; }
  VjpRule get(OpKind op) const { return rules_[static_cast<size_t>(op)]; }

 private:
  std::array<VjpRule, kNumOps> rules_{};
};

const VjpTable& vjp_table();

// Rule groups, one file each (see ir/ops.h for the groups).
void register_elementwise_vjps(VjpTable& t);
void register_layout_vjps(VjpTable& t);
void register_nn_vjps(VjpTable& t);
void register_attention_vjps(VjpTable& t);
void register_collective_vjps(VjpTable& t);

}  // namespace solo::autograd
