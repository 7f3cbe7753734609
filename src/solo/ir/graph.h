// The graph IR: an append-only list of nodes in topological order. Every node produces one
// or more values; each value has a shape and dtype inferred when the node is added. Nodes
// remember the module scope that created them (e.g. "model.layers.3.mlp"), which the
// planner uses to split pipeline stages and the profiler to attribute time.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "solo/core/attrs.h"
#include "solo/core/dtype.h"
#include "solo/core/op_kind.h"
#include "solo/core/shape.h"

namespace solo::ir {

using ValueId = int32_t;
using NodeId = int32_t;
constexpr ValueId kNoValue = -1;

struct TensorType {
  Shape shape;
  DType dtype = DType::F32;
  size_t bytes() const { return static_cast<size_t>(shape.numel()) * dtype_size(dtype); }
};

struct Value {
  NodeId producer = -1;
  int index = 0;  // which output of the producer
  TensorType type;
};

struct Node {
  OpKind op = OpKind::Input;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  Attrs attrs;
  int scope = 0;         // index into Graph::scopes()
  bool no_grad = false;  // built under a no-grad scope: autograd does not pass through it
  std::string name;      // Input nodes: what is bound to them (e.g. a parameter name)
  bool batch = false;    // Input nodes: rows of the batch, which differ from rank to rank
};

// How an input's storage holds a tensor-parallel block: `axis` < 0 for the whole tensor.
struct HeldSplit {
  int axis = -1;
  int64_t ranks = 1;
  // stage >= 0: the tensor lives on that pipeline stage of `stages` only; this rank holds
  // nothing of it (compile/pipeline.h).
  int stage = -1;
  int64_t stages = 1;
};
inline constexpr const char* kHeldAxisAttr = "held_axis";
inline constexpr const char* kHeldRanksAttr = "held_ranks";
inline constexpr const char* kHeldStageAttr = "held_stage";
inline constexpr const char* kHeldStagesAttr = "held_stages";

class Graph {
 public:
  Graph();

  // Appends a node whose output types were already inferred; returns its output values.
  std::vector<ValueId> add_node(OpKind op, std::vector<ValueId> inputs,
                                std::vector<TensorType> output_types, Attrs attrs = {},
                                std::string name = {});
  // Single-output convenience.
  ValueId add(OpKind op, std::vector<ValueId> inputs, TensorType type, Attrs attrs = {});
  // `batch`: the input holds rows of the batch (this rank's, under data parallelism), so
  // what is computed from it differs between ranks until it is reduced.
  // `shards` > 1: the data bound to it will be this rank's flat block of `type` over that
  // many data-parallel ranks (storage a sharding plan left; attr "shards", in the hash).
  // `mapped`: its values are still file bytes, so a plan may read just a block of them
  // (attr "mapped", in the hash).
  // `held`: the data bound to it is this rank's block along an axis over the ranks of a
  // tensor-parallel group (storage a tensor-parallel plan left; attrs kHeldAxisAttr and
  // kHeldRanksAttr, in the hash). `type` is the whole tensor's either way.
  ValueId input(TensorType type, std::string name, bool batch = false, int64_t shards = 1,
                bool mapped = false, HeldSplit held = {});

  // Appends a node with an explicit origin (module scope and no-grad mark), for passes.
  std::vector<ValueId> add_node_from(const std::string& scope, bool no_grad, OpKind op,
                                     std::vector<ValueId> inputs,
                                     std::vector<TensorType> output_types, Attrs attrs = {});
  // Appends a copy of `node` of another graph (same op, attributes, output types, scope
  // and no-grad mark) reading `inputs` of this graph; returns its outputs. The compile
  // layer's passes build per-rank graphs with it, never reading the front end's thread-locals.
  std::vector<ValueId> copy_node(const Graph& from, const Node& node, std::vector<ValueId> inputs);
  // The same with other output types and attributes (a pass running the op on blocks).
  std::vector<ValueId> copy_node(const Graph& from, const Node& node, std::vector<ValueId> inputs,
                                 std::vector<TensorType> output_types, Attrs attrs);

  // Values that are the gradients of the step's leaves (marked by the front end after
  // autograd): passes that reduce gradients over ranks find them here. Part of the hash.
  void mark_gradient(ValueId v);
  const std::vector<ValueId>& gradients() const { return gradients_; }

  const Node& node(NodeId id) const { return nodes_[static_cast<size_t>(id)]; }
  const Value& value(ValueId id) const { return values_[static_cast<size_t>(id)]; }
  const TensorType& type(ValueId id) const { return value(id).type; }
  const Shape& shape(ValueId id) const { return value(id).type.shape; }
  DType dtype(ValueId id) const { return value(id).type.dtype; }
  const Node& producer(ValueId id) const { return node(value(id).producer); }

  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  int num_values() const { return static_cast<int>(values_.size()); }
  const std::vector<std::string>& scopes() const { return scopes_; }
  const std::string& scope_of(NodeId id) const {
    return scopes_[static_cast<size_t>(node(id).scope)];
  }

  // Hash of the structure: ops, attributes, wiring, shapes and dtypes (not names, scopes or
  // data). Equal programs give equal hashes; it keys the plan cache.
  uint64_t structural_hash() const;
  // One line per node, for debugging and error messages.
  std::string dump() const;
  std::string describe(NodeId id) const;

 private:
  int intern_scope(const std::string& scope);
  std::vector<ValueId> append(OpKind op, std::vector<ValueId> inputs,
                              std::vector<TensorType> output_types, Attrs attrs, std::string name,
                              int scope, bool no_grad);
  // Deques: appending never moves existing nodes or values, so a `const Shape&` taken from
  // the graph stays valid while a builder or VJP rule appends more nodes.
  std::deque<Node> nodes_;
  std::deque<Value> values_;
  std::vector<std::string> scopes_;
  std::vector<ValueId> gradients_;
};

// Module scope of the nodes built on this thread: ScopeGuard g("layers.3") nests under the
// enclosing scope, giving "model.layers.3".
class ScopeGuard {
 public:
  explicit ScopeGuard(const std::string& name);
  ~ScopeGuard();
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  size_t previous_length_;
};
const std::string& current_scope();

// Nodes built while a NoGradGuard lives are marked no_grad.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
bool grad_enabled();

// Nodes built on this thread while an OriginGuard lives take exactly this scope and no-grad
// mark, so a pass can use the builders of ir/ops.h for the nodes it adds on behalf of
// another node (a gather before a layer's matmul belongs to the layer).
class OriginGuard {
 public:
  OriginGuard(const std::string& scope, bool no_grad);
  ~OriginGuard();
  OriginGuard(const OriginGuard&) = delete;
  OriginGuard& operator=(const OriginGuard&) = delete;

 private:
  std::string previous_scope_;
  bool previous_grad_;
};

}  // namespace solo::ir
