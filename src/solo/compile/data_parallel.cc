#include "solo/compile/data_parallel.h"

#include <unordered_set>

namespace solo::compile {

ir::Graph data_parallel(const ir::Graph& g, std::vector<ir::ValueId>& value_of,
                        size_t bucket_bytes) {
  ir::Graph out;
  value_of.assign(static_cast<size_t>(g.num_values()), ir::kNoValue);
  const std::unordered_set<ir::ValueId> marked(g.gradients().begin(), g.gradients().end());
  std::unordered_set<ir::ValueId> waiting;  // gradients produced, not yet reduced
  std::vector<ir::ValueId> bucket;          // the same, in production order
  size_t bytes = 0;
  auto reduce_bucket = [&] {
    if (bucket.empty()) return;
    std::vector<ir::ValueId> members;
    std::vector<ir::TensorType> types;
    for (ir::ValueId v : bucket) {
      members.push_back(value_of[static_cast<size_t>(v)]);
      types.push_back(g.type(v));
    }
    const std::vector<ir::ValueId> reduced =
        out.add_node_from({}, /*no_grad=*/true, OpKind::AllReduce, members, types,
                          Attrs().set("average", true).set("group", int64_t{0}));
    for (size_t k = 0; k < bucket.size(); ++k) {
      value_of[static_cast<size_t>(bucket[k])] = reduced[k];
      out.mark_gradient(reduced[k]);
    }
    bucket.clear();
    waiting.clear();
    bytes = 0;
  };
  for (int n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    std::vector<ir::ValueId> inputs;
    for (ir::ValueId v : node.inputs) {
      if (waiting.count(v)) reduce_bucket();  // a reader needs the averaged value
      inputs.push_back(value_of[static_cast<size_t>(v)]);
    }
    const std::vector<ir::ValueId> outs = out.copy_node(g, node, std::move(inputs));
    for (size_t k = 0; k < outs.size(); ++k) {
      const ir::ValueId v = node.outputs[k];
      value_of[static_cast<size_t>(v)] = outs[k];
      if (!marked.count(v) || waiting.count(v)) continue;
      bucket.push_back(v);
      waiting.insert(v);
      bytes += g.type(v).bytes();
      if (bytes >= bucket_bytes) reduce_bucket();
    }
  }
  reduce_bucket();
  return out;
}

}  // namespace solo::compile
