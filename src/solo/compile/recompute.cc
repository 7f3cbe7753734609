#include "solo/compile/recompute.h"

#include <cctype>
#include <unordered_map>

namespace solo::compile {

std::string block_of_scope(const std::string& scope) {
  size_t end = 0;  // one past the last numeric component seen
  size_t start = 0;
  while (start <= scope.size()) {
    size_t dot = scope.find('.', start);
    if (dot == std::string::npos) dot = scope.size();
    bool numeric = dot > start;
    for (size_t i = start; i < dot; ++i) numeric = numeric && std::isdigit(scope[i]) != 0;
    if (numeric) end = dot;
    start = dot + 1;
  }
  return scope.substr(0, end);
}

ir::Graph recompute_blocks(const ir::Graph& g, std::vector<ir::ValueId>& value_of) {
  const auto n_nodes = static_cast<size_t>(g.num_nodes());
  // Per node: its block when it is a forward node inside one, else -1.
  std::vector<int> block(n_nodes, -1);
  std::unordered_map<std::string, int> block_ids;
  std::vector<std::vector<ir::NodeId>> block_nodes;  // forward nodes of each block, in order
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.no_grad || node.op == OpKind::Input) continue;
    const std::string b = block_of_scope(g.scope_of(n));
    if (b.empty()) continue;
    auto [it, added] = block_ids.emplace(b, static_cast<int>(block_nodes.size()));
    if (added) block_nodes.emplace_back();
    block[static_cast<size_t>(n)] = it->second;
    block_nodes[static_cast<size_t>(it->second)].push_back(n);
  }
  auto block_of_value = [&](ir::ValueId v) {
    return block[static_cast<size_t>(g.value(v).producer)];
  };
  // Checkpoints: values made in a block and read by a forward node outside it.
  std::vector<bool> checkpoint(static_cast<size_t>(g.num_values()), false);
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.no_grad) continue;
    for (ir::ValueId v : node.inputs) {
      const int b = block_of_value(v);
      if (b >= 0 && b != block[static_cast<size_t>(n)]) checkpoint[static_cast<size_t>(v)] = true;
    }
  }

  ir::Graph out;
  value_of.assign(static_cast<size_t>(g.num_values()), ir::kNoValue);
  std::vector<ir::ValueId> replayed(static_cast<size_t>(g.num_values()), ir::kNoValue);
  std::vector<bool> replayed_block(block_nodes.size(), false);
  auto replay = [&](int b) {
    replayed_block[static_cast<size_t>(b)] = true;
    for (ir::NodeId n : block_nodes[static_cast<size_t>(b)]) {
      const ir::Node& node = g.node(n);
      std::vector<ir::ValueId> inputs;
      for (ir::ValueId v : node.inputs) {
        const ir::ValueId again = replayed[static_cast<size_t>(v)];
        inputs.push_back(again != ir::kNoValue ? again : value_of[static_cast<size_t>(v)]);
      }
      std::vector<ir::TensorType> types;
      for (ir::ValueId v : node.outputs) types.push_back(g.type(v));
      const std::vector<ir::ValueId> outs =
          out.add_node_from(g.scope_of(n), /*no_grad=*/true, node.op, std::move(inputs),
                            std::move(types), node.attrs);
      for (size_t k = 0; k < outs.size(); ++k)
        replayed[static_cast<size_t>(node.outputs[k])] = outs[k];
    }
  };
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    std::vector<ir::ValueId> inputs;
    for (ir::ValueId v : node.inputs) {
      const int b = block_of_value(v);
      const bool recomputed = node.no_grad && b >= 0 && !checkpoint[static_cast<size_t>(v)];
      if (recomputed && !replayed_block[static_cast<size_t>(b)]) replay(b);
      inputs.push_back(recomputed ? replayed[static_cast<size_t>(v)]
                                  : value_of[static_cast<size_t>(v)]);
    }
    const std::vector<ir::ValueId> outs = out.copy_node(g, node, std::move(inputs));
    for (size_t k = 0; k < outs.size(); ++k)
      value_of[static_cast<size_t>(node.outputs[k])] = outs[k];
  }
  for (ir::ValueId v : g.gradients()) out.mark_gradient(value_of[static_cast<size_t>(v)]);
  return out;
}

}  // namespace solo::compile
