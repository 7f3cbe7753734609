#include "solo/ir/graph.h"

#include <sstream>
#include <string>

#include "solo/core/error.h"
#include "solo/core/hash.h"
#include "solo/core/op_info.h"

namespace solo::ir {

namespace {
thread_local std::string t_scope;
thread_local bool t_grad_enabled = true;
}  // namespace

ScopeGuard::ScopeGuard(const std::string& name) : previous_length_(t_scope.size()) {
  if (!t_scope.empty()) t_scope += '.';
  t_scope += name;
}
ScopeGuard::~ScopeGuard() {
  t_scope.resize(previous_length_);
}
const std::string& current_scope() {
  return t_scope;
}

NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) {
  t_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  t_grad_enabled = previous_;
}
bool grad_enabled() {
  return t_grad_enabled;
}

OriginGuard::OriginGuard(const std::string& scope, bool no_grad)
    : previous_scope_(t_scope), previous_grad_(t_grad_enabled) {
  t_scope = scope;
  t_grad_enabled = !no_grad;
}
OriginGuard::~OriginGuard() {
  t_scope = std::move(previous_scope_);
  t_grad_enabled = previous_grad_;
}

Graph::Graph() {
  scopes_.emplace_back();
}

int Graph::intern_scope(const std::string& scope) {
  // Nodes arrive scope by scope, so the last scope is almost always the one asked for.
  if (scopes_.back() == scope) return static_cast<int>(scopes_.size()) - 1;
  for (size_t i = 0; i < scopes_.size(); ++i)
    if (scopes_[i] == scope) return static_cast<int>(i);
  scopes_.push_back(scope);
  return static_cast<int>(scopes_.size()) - 1;
}

std::vector<ValueId> Graph::add_node(OpKind op, std::vector<ValueId> inputs,
                                     std::vector<TensorType> output_types, Attrs attrs,
                                     std::string name) {
  // The front end's defaults: the module scope and no-grad mark of the building thread.
  return append(op, std::move(inputs), std::move(output_types), std::move(attrs), std::move(name),
                intern_scope(t_scope), !t_grad_enabled);
}

std::vector<ValueId> Graph::copy_node(const Graph& from, const Node& node,
                                      std::vector<ValueId> inputs) {
  std::vector<TensorType> types;
  for (ValueId v : node.outputs) types.push_back(from.type(v));
  return copy_node(from, node, std::move(inputs), std::move(types), node.attrs);
}

std::vector<ValueId> Graph::copy_node(const Graph& from, const Node& node,
                                      std::vector<ValueId> inputs,
                                      std::vector<TensorType> output_types, Attrs attrs) {
  std::vector<ValueId> out =
      append(node.op, std::move(inputs), std::move(output_types), std::move(attrs), node.name,
             intern_scope(from.scopes()[static_cast<size_t>(node.scope)]), node.no_grad);
  nodes_.back().batch = node.batch;
  return out;
}

std::vector<ValueId> Graph::add_node_from(const std::string& scope, bool no_grad, OpKind op,
                                          std::vector<ValueId> inputs,
                                          std::vector<TensorType> output_types, Attrs attrs) {
  return append(op, std::move(inputs), std::move(output_types), std::move(attrs), {},
                intern_scope(scope), no_grad);
}

void Graph::mark_gradient(ValueId v) {
  SOLO_CHECK(v >= 0 && v < num_values(), "mark_gradient: value ", v,
             " does not belong to this graph");
  gradients_.push_back(v);
}

std::vector<ValueId> Graph::append(OpKind op, std::vector<ValueId> inputs,
                                   std::vector<TensorType> output_types, Attrs attrs,
                                   std::string name, int scope, bool no_grad) {
  for (ValueId v : inputs)
    SOLO_CHECK(v >= 0 && v < num_values(), op_name(op), ": input value ", v,
               " does not belong to this graph");
  // The op table's arity is what the memory plan, executor and kernels rely on.
  const OpInfo& info = op_info(op);
  const auto n_in = static_cast<int>(inputs.size());
  SOLO_CHECK(
      n_in >= info.min_inputs && (info.max_inputs == kAnyArity || n_in <= info.max_inputs),
      op_name(op), ": a node with ", n_in, " inputs (the op takes ",
      static_cast<int>(info.min_inputs), " to ",
      info.max_inputs == kAnyArity ? std::string("any number") : std::to_string(info.max_inputs),
      ")");
  const int n_out = info.outputs == kAnyArity ? n_in : info.outputs;
  SOLO_CHECK(static_cast<int>(output_types.size()) == n_out, op_name(op), ": a node with ",
             output_types.size(), " outputs (the op has ", n_out, ")");
  Node n;
  n.op = op;
  n.inputs = std::move(inputs);
  n.attrs = std::move(attrs);
  n.scope = scope;
  n.no_grad = no_grad;
  n.name = std::move(name);
  const auto id = static_cast<NodeId>(nodes_.size());
  for (size_t i = 0; i < output_types.size(); ++i) {
    n.outputs.push_back(static_cast<ValueId>(values_.size()));
    values_.push_back(Value{id, static_cast<int>(i), std::move(output_types[i])});
  }
  nodes_.push_back(std::move(n));
  return nodes_.back().outputs;
}

ValueId Graph::add(OpKind op, std::vector<ValueId> inputs, TensorType type, Attrs attrs) {
  return add_node(op, std::move(inputs), {std::move(type)}, std::move(attrs))[0];
}

ValueId Graph::input(TensorType type, std::string name, bool batch, int64_t shards, bool mapped,
                     HeldSplit held) {
  SOLO_CHECK(shards >= 1, "input '", name, "': shards = ", shards, "; a tensor has >= 1 block");
  Attrs attrs;
  if (shards > 1) attrs.set("shards", shards);
  if (mapped) attrs.set("mapped", int64_t{1});
  if (held.axis >= 0) {
    SOLO_CHECK(
        held.axis < type.shape.rank() && held.ranks >= 1 && type.shape[held.axis] % held.ranks == 0,
        "input '", name, "': a block along axis ", held.axis, " over ", held.ranks, " ranks of ",
        type.shape.str(), " does not exist");
    attrs.set(kHeldAxisAttr, static_cast<int64_t>(held.axis)).set(kHeldRanksAttr, held.ranks);
  }
  if (held.stage >= 0) {
    SOLO_CHECK(held.stage < held.stages, "input '", name, "': stage ", held.stage, " of ",
               held.stages, " does not exist");
    attrs.set(kHeldStageAttr, static_cast<int64_t>(held.stage)).set(kHeldStagesAttr, held.stages);
  }
  const ValueId v =
      add_node(OpKind::Input, {}, {std::move(type)}, std::move(attrs), std::move(name))[0];
  nodes_.back().batch = batch;
  return v;
}

uint64_t Graph::structural_hash() const {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const Node& n : nodes_) {
    h = hash_mix(h, static_cast<uint64_t>(n.op));
    h = hash_mix(h, n.no_grad);
    h = hash_mix(h, n.batch);
    for (ValueId v : n.inputs) h = hash_mix(h, static_cast<uint64_t>(v));
    h = n.attrs.hash(h);
    for (ValueId v : n.outputs) {
      const TensorType& t = type(v);
      h = hash_mix(h, static_cast<uint64_t>(t.dtype));
      h = hash_mix(h, static_cast<uint64_t>(t.shape.rank()));
      for (int64_t d : t.shape.dims()) h = hash_mix(h, static_cast<uint64_t>(d));
    }
  }
  h = hash_mix(h, 0x9a4dull);  // separates the gradient marks from the nodes
  for (ValueId v : gradients_) h = hash_mix(h, static_cast<uint64_t>(v));
  return h;
}

std::string Graph::describe(NodeId id) const {
  const Node& n = node(id);
  std::ostringstream os;
  os << '%' << id << " = " << op_name(n.op) << '(';
  for (size_t i = 0; i < n.inputs.size(); ++i) os << (i ? ", " : "") << 'v' << n.inputs[i];
  os << ')';
  if (!n.attrs.items().empty()) os << " {" << n.attrs.str() << '}';
  if (!n.name.empty()) os << " \"" << n.name << '"';
  os << " ->";
  for (ValueId v : n.outputs)
    os << " v" << v << ':' << dtype_name(type(v).dtype) << type(v).shape.str();
  if (!scopes_[static_cast<size_t>(n.scope)].empty())
    os << "  @" << scopes_[static_cast<size_t>(n.scope)];
  return os.str();
}

std::string Graph::dump() const {
  std::string s;
  for (int i = 0; i < num_nodes(); ++i) s += describe(i) + '\n';
  return s;
}

}  // namespace solo::ir
