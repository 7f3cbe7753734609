#include "solo/compile/data_parallel.h"

#include <algorithm>
#include <unordered_set>

namespace solo::compile {

namespace {
std::vector<ir::ValueId> average(ir::Graph& out, const std::vector<ir::ValueId>& values) {
  std::vector<ir::TensorType> types;
  for (ir::ValueId v : values) types.push_back(out.type(v));
  return out.add_node_from({}, /*no_grad=*/true, OpKind::AllReduce, values, types,
                           Attrs().set("average", true).set("group", int64_t{0}));
}
}  // namespace

ir::Graph data_parallel(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                        std::vector<ir::ValueId>& value_of, size_t bucket_bytes) {
  ir::Graph out;
  // Per value of `out`: computed from this rank's rows and not reduced since.
  std::vector<bool> rank_local;
  auto set_local = [&](ir::ValueId v, bool local) {
    if (static_cast<size_t>(v) >= rank_local.size()) rank_local.resize(static_cast<size_t>(v) + 1);
    rank_local[static_cast<size_t>(v)] = local;
  };
  value_of.assign(static_cast<size_t>(g.num_values()), ir::kNoValue);
  const std::unordered_set<ir::ValueId> marked(g.gradients().begin(), g.gradients().end());
  std::unordered_set<ir::ValueId> waiting;  // gradients produced, not yet reduced
  std::vector<ir::ValueId> bucket;          // the same, in production order
  size_t bytes = 0;
  auto reduce_bucket = [&] {
    if (bucket.empty()) return;
    std::vector<ir::ValueId> members;
    for (ir::ValueId v : bucket) members.push_back(value_of[static_cast<size_t>(v)]);
    const std::vector<ir::ValueId> reduced = average(out, members);
    for (size_t k = 0; k < bucket.size(); ++k) {
      value_of[static_cast<size_t>(bucket[k])] = reduced[k];
      out.mark_gradient(reduced[k]);
      set_local(reduced[k], false);
    }
    bucket.clear();
    waiting.clear();
    bytes = 0;
  };
  for (int n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    std::vector<ir::ValueId> inputs;
    for (ir::ValueId v : node.inputs)
      if (waiting.count(v)) reduce_bucket();  // a reader needs the averaged value
    bool local = node.op == OpKind::Input && node.batch;
    for (ir::ValueId v : node.inputs) {
      inputs.push_back(value_of[static_cast<size_t>(v)]);
      local = local || rank_local[static_cast<size_t>(inputs.back())];
    }
    const std::vector<ir::ValueId> outs = out.copy_node(g, node, std::move(inputs));
    for (size_t k = 0; k < outs.size(); ++k) {
      const ir::ValueId v = node.outputs[k];
      value_of[static_cast<size_t>(v)] = outs[k];
      set_local(outs[k], local);
      if (!marked.count(v) || waiting.count(v)) continue;
      bucket.push_back(v);
      waiting.insert(v);
      bytes += g.type(v).bytes();
      if (bytes >= bucket_bytes) reduce_bucket();
    }
  }
  reduce_bucket();
  // Requested scalars of the batch (the loss): the global batch's mean, read on every rank.
  std::vector<ir::ValueId> scalars, scalar_steps;
  for (ir::ValueId v : outputs) {
    const ir::ValueId local = value_of[static_cast<size_t>(v)];
    if (rank_local[static_cast<size_t>(local)] && out.type(local).shape.numel() == 1 &&
        is_floating(out.dtype(local)) &&
        std::find(scalar_steps.begin(), scalar_steps.end(), v) == scalar_steps.end()) {
      scalars.push_back(local);
      scalar_steps.push_back(v);
    }
  }
  if (!scalars.empty()) {
    const std::vector<ir::ValueId> reduced = average(out, scalars);
    for (size_t k = 0; k < reduced.size(); ++k)
      value_of[static_cast<size_t>(scalar_steps[k])] = reduced[k];
  }
  return out;
}

}  // namespace solo::compile
