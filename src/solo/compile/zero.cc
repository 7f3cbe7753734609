#include "solo/compile/zero.h"

#include <map>
#include <unordered_set>

#include "solo/core/error.h"
#include "solo/core/op_info.h"
#include "solo/ir/ops.h"

namespace solo::compile {

namespace {

using ir::ValueId;

class Sharder {
 public:
  Sharder(const ir::Graph& g, const ShardingOptions& o) : g_(g), o_(o) {
    value_of_.assign(static_cast<size_t>(g.num_values()), ir::kNoValue);
    gradients_.insert(g.gradients().begin(), g.gradients().end());
  }

  ir::Graph run(const std::vector<ValueId>& outputs, std::vector<ValueId>& value_of,
                std::unordered_map<ValueId, int64_t>& output_shards) {
    const std::unordered_set<ValueId> requested(outputs.begin(), outputs.end());
    for (ir::NodeId id = 0; id < g_.num_nodes(); ++id) {
      const ir::Node& node = g_.node(id);
      const std::string& scope = g_.scope_of(id);
      copy(node, scope);
      for (size_t k = 0; k < node.outputs.size(); ++k) {
        const ValueId v = node.outputs[k];
        ValueId& local = value_of_[static_cast<size_t>(v)];
        if (gradients_.count(v)) out_.mark_gradient(local);
        if (!requested.count(v) || !is_block(local)) continue;
        // A new parameter goes back whole unless parameters are sharded (zero = 3).
        if (node.op == OpKind::AdamWUpdate && k == 0 && o_.zero < 3)
          local = whole(local, scope, node.no_grad);
        else
          output_shards[local] = o_.ranks;
      }
    }
    value_of = std::move(value_of_);
    return std::move(out_);
  }

 private:
  bool is_block(ValueId v) const { return global_.count(v) != 0; }
  bool divisible(const ir::TensorType& t) const {
    return t.shape.numel() >= o_.ranks && t.shape.numel() % o_.ranks == 0;
  }
  ValueId local(ValueId v) const { return value_of_[static_cast<size_t>(v)]; }

  void copy(const ir::Node& node, const std::string& scope) {
    if (node.op == OpKind::Input) return input(node);
    if (o_.zero >= 2 && reduces_gradients(node)) return reduce_scatter(node, scope);
    if (op_info(node.op).elementwise && blockwise(node)) return elementwise(node, scope);
    if (node.op == OpKind::Sum && is_block(local(node.inputs[0])) &&
        g_.type(node.outputs[0]).shape.numel() == 1)
      return sum_of_block(node, scope);
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs) inputs.push_back(whole(local(v), scope, node.no_grad));
    set(node, out_.copy_node(g_, node, std::move(inputs)));
  }

  void set(const ir::Node& node, const std::vector<ValueId>& outs) {
    for (size_t k = 0; k < outs.size(); ++k)
      value_of_[static_cast<size_t>(node.outputs[k])] = outs[k];
  }

  void input(const ir::Node& node) {
    int64_t shards = node.attrs.i_or("shards", 1);
    const ir::TensorType& t = g_.type(node.outputs[0]);
    // Mapped file bytes: under zero 3 this rank reads only its block of them.
    const bool mapped = node.attrs.i_or("mapped", 0) != 0;
    if (mapped && o_.zero == 3 && divisible(t) && is_floating(t.dtype)) shards = o_.ranks;
    if (shards == 1) return set(node, out_.copy_node(g_, node, {}));
    SOLO_CHECK(shards == o_.ranks, "input '", node.name, "' is held as blocks over ", shards,
               " ranks (the storage an earlier plan left), but this plan shards over ", o_.ranks,
               "; keep one plan for the whole run");
    // The input as its flat block, its other attributes (a tensor-parallel split) kept.
    Attrs attrs = node.attrs;
    attrs.set("shards", shards);
    if (mapped) attrs.set("mapped", int64_t{1});
    const ValueId v =
        out_.copy_node(g_, node, {}, {{Shape{t.shape.numel() / shards}, t.dtype}}, attrs)[0];
    global_[v] = t;
    set(node, {v});
  }

  // An AllReduce bucket of the data-parallel pass: a sum of marked gradients.
  bool reduces_gradients(const ir::Node& node) const {
    if (node.op != OpKind::AllReduce || node.attrs.i_or("group", 0) != 0) return false;
    for (ValueId v : node.outputs)
      if (!gradients_.count(v)) return false;
    return true;
  }

  void reduce_scatter(const ir::Node& node, const std::string& scope) {
    ir::OriginGuard origin(scope, node.no_grad);
    std::vector<size_t> whole_members;
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const ValueId in = local(node.inputs[k]);
      const ir::TensorType& t = out_.type(in);
      if (!divisible(t) || !is_floating(t.dtype)) {
        whole_members.push_back(k);
        continue;
      }
      const ValueId flat = ir::reshape(out_, in, Shape{t.shape.numel()});
      const ValueId block = ir::reduce_scatter(out_, flat, o_.ranks);
      global_[block] = t;
      value_of_[static_cast<size_t>(node.outputs[k])] = block;
    }
    if (whole_members.empty()) return;
    std::vector<ValueId> inputs;
    std::vector<ir::TensorType> types;
    for (size_t k : whole_members) {
      inputs.push_back(local(node.inputs[k]));
      types.push_back(g_.type(node.outputs[k]));
    }
    const std::vector<ValueId> reduced =
        out_.add_node_from(scope, node.no_grad, OpKind::AllReduce, inputs, types, node.attrs);
    for (size_t i = 0; i < whole_members.size(); ++i)
      value_of_[static_cast<size_t>(node.outputs[whole_members[i]])] = reduced[i];
  }

  // Operands of one element broadcast against a block as they did against the whole.
  static bool scalar(const Shape& s) { return s.numel() == 1 && s.rank() <= 1; }

  bool blockwise(const ir::Node& node) const {
    const Shape& shape = g_.shape(node.outputs[0]);
    if (!divisible(g_.type(node.outputs[0]))) return false;
    for (ValueId v : node.outputs)
      if (g_.shape(v) != shape) return false;
    bool any_block = o_.zero >= 1 && node.op == OpKind::AdamWUpdate;
    for (ValueId v : node.inputs) {
      if (g_.shape(v) == shape)
        any_block |= is_block(local(v));
      else if (!scalar(g_.shape(v)))
        return false;
    }
    // Without low_prec a parameter is gathered in its own precision and cast whole.
    if (node.op == OpKind::Cast && o_.zero == 3 && !o_.low_prec &&
        dtype_size(g_.dtype(node.outputs[0])) < dtype_size(g_.dtype(node.inputs[0])))
      return false;
    return any_block;
  }

  void elementwise(const ir::Node& node, const std::string& scope) {
    const Shape& shape = g_.shape(node.outputs[0]);
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs)
      inputs.push_back(g_.shape(v) == shape ? block(local(v), scope, node.no_grad) : local(v));
    std::vector<ir::TensorType> types;
    for (ValueId v : node.outputs) types.push_back({Shape{shape.numel() / o_.ranks}, g_.dtype(v)});
    const std::vector<ValueId> outs =
        out_.add_node_from(scope, node.no_grad, node.op, std::move(inputs), types, node.attrs);
    for (size_t k = 0; k < outs.size(); ++k) global_[outs[k]] = g_.type(node.outputs[k]);
    set(node, outs);
  }

  void sum_of_block(const ir::Node& node, const std::string& scope) {
    ir::OriginGuard origin(scope, node.no_grad);
    const ValueId total =
        ir::all_reduce(out_, ir::sum(out_, local(node.inputs[0])), /*average=*/false);
    set(node, {ir::reshape(out_, total, g_.shape(node.outputs[0]))});
  }

  // The whole tensor of a block, gathered once per phase (forward or backward: the no-grad
  // mark of the reader), so that a parameter is not held whole from forward to backward.
  ValueId whole(ValueId v, const std::string& scope, bool no_grad) {
    if (!is_block(v)) return v;
    const auto it = gathered_.find({v, no_grad});
    if (it != gathered_.end()) return it->second;
    ir::OriginGuard origin(scope, no_grad);
    const ValueId w = ir::reshape(out_, ir::all_gather(out_, v, o_.ranks), global_.at(v).shape);
    gathered_.emplace(std::pair{v, no_grad}, w);
    return w;
  }

  // This rank's block of a whole value (the same on every rank).
  ValueId block(ValueId v, const std::string& scope, bool no_grad) {
    if (is_block(v)) return v;
    auto it = blocks_.find(v);
    if (it != blocks_.end()) return it->second;
    ir::OriginGuard origin(scope, no_grad);
    const ir::TensorType t = out_.type(v);
    const Shape flat{t.shape.numel() / o_.ranks};
    const ir::Node& producer = out_.producer(v);
    ValueId b;
    if (producer.op == OpKind::Full) {  // a constant (fresh optimizer states): made at block size
      b = out_.add(OpKind::Full, {}, {flat, t.dtype}, producer.attrs);
    } else if (producer.op == OpKind::BroadcastTo && scalar(out_.shape(producer.inputs[0]))) {
      b = ir::broadcast_to(out_, ir::reshape(out_, producer.inputs[0], Shape{}), flat);
    } else {
      b = ir::local_shard(out_, ir::reshape(out_, v, Shape{t.shape.numel()}), o_.ranks);
    }
    global_[b] = t;
    blocks_[v] = b;
    return b;
  }

  const ir::Graph& g_;
  const ShardingOptions o_;
  ir::Graph out_;
  std::vector<ValueId> value_of_;
  std::unordered_set<ValueId> gradients_;
  std::unordered_map<ValueId, ir::TensorType> global_;    // block -> its whole tensor's type
  std::map<std::pair<ValueId, bool>, ValueId> gathered_;  // (block, phase) -> whole
  std::unordered_map<ValueId, ValueId> blocks_;           // whole -> block
};

}  // namespace

ir::Graph shard_state(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                      const ShardingOptions& options, std::vector<ir::ValueId>& value_of,
                      std::unordered_map<ir::ValueId, int64_t>& output_shards) {
  SOLO_CHECK(options.ranks >= 1 && options.zero >= 0 && options.zero <= 3, "shard_state: ranks ",
             options.ranks, " and zero ", options.zero, " are out of range (ranks >= 1, zero 0-3)");
  return Sharder(g, options).run(outputs, value_of, output_shards);
}

ir::Graph with_state_as_blocks(const ir::Graph& g, int ranks, int zero) {
  std::unordered_set<ValueId> sharded;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.op != OpKind::AdamWUpdate) continue;
    if (zero == 3) sharded.insert(node.inputs[0]);
    if (zero >= 1) sharded.insert({node.inputs[2], node.inputs[3]});
  }
  ir::Graph out;
  std::vector<ValueId> map(static_cast<size_t>(g.num_values()), ir::kNoValue);
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    std::vector<ValueId> outs;
    const ir::TensorType& t = g.type(node.outputs[0]);
    if (node.op == OpKind::Input && sharded.count(node.outputs[0]) && t.shape.numel() >= ranks &&
        t.shape.numel() % ranks == 0) {
      Attrs attrs = node.attrs;  // a tensor-parallel block's too: blocks of that block
      attrs.set("shards", static_cast<int64_t>(ranks));
      outs = out.copy_node(g, node, {}, {t}, std::move(attrs));
    } else {
      std::vector<ValueId> inputs;
      for (ValueId v : node.inputs) inputs.push_back(map[static_cast<size_t>(v)]);
      outs = out.copy_node(g, node, std::move(inputs));
    }
    for (size_t k = 0; k < outs.size(); ++k) map[static_cast<size_t>(node.outputs[k])] = outs[k];
  }
  for (ValueId v : g.gradients()) out.mark_gradient(map[static_cast<size_t>(v)]);
  return out;
}

bool reads_blocks(const ir::Graph& g) {
  for (ir::NodeId id = 0; id < g.num_nodes(); ++id)
    if (g.node(id).op == OpKind::Input && g.node(id).attrs.i_or("shards", 1) > 1) return true;
  return false;
}

}  // namespace solo::compile
