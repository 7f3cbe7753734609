#include "solo/compile/prefetch.h"

#include <map>
#include <string>

#include "solo/compile/recompute.h"
#include "solo/ir/ops.h"

namespace solo::compile {

namespace {

using ir::NodeId;
using ir::ValueId;

// The nodes from a block input to the gather's operand (Input, then casts and reshapes), in
// order, when the gather reads one; else empty.
std::vector<NodeId> block_input_chain(const ir::Graph& g, const ir::Node& gather) {
  std::vector<NodeId> chain;
  ValueId v = gather.inputs[0];
  while (true) {
    const NodeId p = g.value(v).producer;
    const ir::Node& node = g.node(p);
    chain.insert(chain.begin(), p);
    if (node.op == OpKind::Input)
      return node.attrs.i_or("shards", 1) > 1 ? chain : std::vector<NodeId>{};
    if (node.op != OpKind::Cast && node.op != OpKind::Reshape) return {};
    v = node.inputs[0];
  }
}

// Per node: the index of its run (see prefetch.h), and per run its first node.
void find_runs(const ir::Graph& g, std::vector<int>& run_of, std::vector<NodeId>& run_start) {
  std::pair<std::string, bool> current{"", false};
  run_of.assign(static_cast<size_t>(g.num_nodes()), 0);
  for (NodeId n = 0; n < g.num_nodes(); ++n) {
    const std::string& scope = g.scope_of(n);
    if (!scope.empty()) {
      const std::string block = block_of_scope(scope);
      std::pair<std::string, bool> key{block.empty() ? scope : block, g.node(n).no_grad};
      if (run_start.empty() || key != current) {
        run_start.push_back(n);
        current = std::move(key);
      }
    } else if (run_start.empty()) {
      run_start.push_back(n);
    }
    run_of[static_cast<size_t>(n)] = static_cast<int>(run_start.size()) - 1;
  }
}

}  // namespace

ir::Graph prefetch_gathers(const ir::Graph& g, std::vector<ValueId>& value_of) {
  std::vector<int> run_of;
  std::vector<NodeId> run_start;
  find_runs(g, run_of, run_start);
  // Nodes to emit before node t: the chains of the gathers moved there, in their order.
  std::map<NodeId, std::vector<NodeId>> moved_to;
  std::vector<bool> moved(static_cast<size_t>(g.num_nodes()), false);
  for (NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    const int run = run_of[static_cast<size_t>(n)];
    if (node.op != OpKind::AllGather || run == 0) continue;
    std::vector<NodeId> chain = block_input_chain(g, node);
    if (chain.empty()) continue;
    chain.push_back(n);
    std::vector<NodeId>& at = moved_to[run_start[static_cast<size_t>(run - 1)]];
    at.insert(at.end(), chain.begin(), chain.end());
    moved[static_cast<size_t>(n)] = true;
  }
  ir::Graph out;
  value_of.assign(static_cast<size_t>(g.num_values()), ir::kNoValue);
  std::vector<bool> emitted(static_cast<size_t>(g.num_nodes()), false);
  auto emit = [&](NodeId n) {
    if (emitted[static_cast<size_t>(n)]) return;
    emitted[static_cast<size_t>(n)] = true;
    const ir::Node& node = g.node(n);
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs) inputs.push_back(value_of[static_cast<size_t>(v)]);
    std::vector<ir::TensorType> types;
    for (ValueId v : node.outputs) types.push_back(g.type(v));
    Attrs attrs = node.attrs;
    if (moved[static_cast<size_t>(n)]) attrs.set(ir::kOverlapAttr, true);
    const std::vector<ValueId> outs =
        out.copy_node(g, node, std::move(inputs), std::move(types), std::move(attrs));
    for (size_t k = 0; k < outs.size(); ++k)
      value_of[static_cast<size_t>(node.outputs[k])] = outs[k];
  };
  for (NodeId n = 0; n < g.num_nodes(); ++n) {
    if (auto it = moved_to.find(n); it != moved_to.end())
      for (NodeId m : it->second) emit(m);
    emit(n);
  }
  for (ValueId v : g.gradients()) out.mark_gradient(value_of[static_cast<size_t>(v)]);
  return out;
}

}  // namespace solo::compile
