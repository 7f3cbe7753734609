#include "solo/compile/pipeline.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <string>
#include <unordered_set>

#include "solo/compile/recompute.h"
#include "solo/core/error.h"
#include "solo/core/op_info.h"
#include "solo/ir/ops.h"
#include "solo/planner/op_cost.h"

namespace solo::compile {

namespace {

using Mask = uint64_t;  // a set of stages
constexpr int kFree = -1;

Mask bit(int stage) {
  return Mask{1} << stage;
}

// Where each node of the rank graph runs and each value is made.
struct Assignment {
  std::vector<int> stage;   // per value: the stage that makes it (kFree: computed from inputs)
  std::vector<Mask> runs;   // per node: the stages that run it (0: none)
  std::vector<Mask> reads;  // per value: the stages that read it
  std::vector<bool> split;  // per node: a grouped collective run as one per stage
};

// The units of the step in forward order: [before the blocks, block 0 .. block L-1, after].
struct Units {
  std::vector<int> of_node;  // per node: its unit, -1 when its scope names none
  int blocks = 0;
  int count() const { return blocks + 2; }
};

Units find_units(const ir::Graph& g) {
  Units u;
  u.of_node.assign(static_cast<size_t>(g.num_nodes()), -1);
  std::unordered_map<std::string, int> block_index;
  ir::NodeId first_block = g.num_nodes();
  // Non-block scopes: after the blocks when a forward node of theirs comes after the first.
  std::unordered_map<std::string, bool> after_blocks;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.no_grad || node.op == OpKind::Input || g.scope_of(n).empty()) continue;
    const std::string block = block_of_scope(g.scope_of(n));
    if (!block.empty()) {
      if (block_index.emplace(block, static_cast<int>(block_index.size())).second &&
          first_block == g.num_nodes())
        first_block = n;
      continue;
    }
    bool& after = after_blocks[g.scope_of(n)];
    after = after || n > first_block;
  }
  u.blocks = static_cast<int>(block_index.size());
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const std::string& scope = g.scope_of(n);
    if (scope.empty() || g.node(n).op == OpKind::Input) continue;
    const std::string block = block_of_scope(scope);
    if (!block.empty()) {
      if (auto it = block_index.find(block); it != block_index.end())
        u.of_node[static_cast<size_t>(n)] = 1 + it->second;
      continue;
    }
    auto it = after_blocks.find(scope);
    if (it != after_blocks.end()) u.of_node[static_cast<size_t>(n)] = it->second ? u.blocks + 1 : 0;
  }
  return u;
}

// Contiguous runs of blocks per stage (the units before and after the blocks join the first
// and the last stage), minimising the largest stage's FLOPs.
std::vector<int> balance(const std::vector<double>& unit_flops, int blocks, int stages) {
  const auto cost = [&](int first, int last, int stage) {  // blocks [first, last)
    double c = 0;
    for (int b = first; b < last; ++b) c += unit_flops[static_cast<size_t>(1 + b)];
    if (stage == 0) c += unit_flops.front();
    if (stage == stages - 1) c += unit_flops.back();
    return c;
  };
  constexpr double kInf = std::numeric_limits<double>::infinity();
  // best[s][j]: the least largest stage over stages 0..s holding blocks [0, j).
  std::vector<std::vector<double>> best(static_cast<size_t>(stages),
                                        std::vector<double>(static_cast<size_t>(blocks + 1), kInf));
  std::vector<std::vector<int>> cut(static_cast<size_t>(stages),
                                    std::vector<int>(static_cast<size_t>(blocks + 1), 0));
  for (int j = 1; j <= blocks; ++j) best[0][static_cast<size_t>(j)] = cost(0, j, 0);
  for (int s = 1; s < stages; ++s)
    for (int j = s + 1; j <= blocks; ++j)
      for (int i = s; i < j; ++i) {
        const double c =
            std::max(best[static_cast<size_t>(s - 1)][static_cast<size_t>(i)], cost(i, j, s));
        if (c < best[static_cast<size_t>(s)][static_cast<size_t>(j)]) {
          best[static_cast<size_t>(s)][static_cast<size_t>(j)] = c;
          cut[static_cast<size_t>(s)][static_cast<size_t>(j)] = i;
        }
      }
  std::vector<int> stage_of_unit(static_cast<size_t>(blocks + 2), 0);
  int end = blocks;
  for (int s = stages - 1; s >= 0; --s) {
    const int begin = s == 0 ? 0 : cut[static_cast<size_t>(s)][static_cast<size_t>(end)];
    for (int b = begin; b < end; ++b) stage_of_unit[static_cast<size_t>(1 + b)] = s;
    end = begin;
  }
  stage_of_unit.back() = stages - 1;
  return stage_of_unit;
}

bool is_grouped_collective(const ir::Node& node) {
  return op_info(node.op).collective && node.inputs.size() > 1 &&
         node.inputs.size() == node.outputs.size();
}

Assignment assign(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int stages) {
  const Units units = find_units(g);
  SOLO_CHECK(units.blocks >= stages, "pipeline parallelism over ", stages,
             " stages needs at least as many blocks (module scopes like model.layers.N); the step "
             "has ",
             units.blocks, "; use fewer stages");
  std::vector<double> unit_flops(static_cast<size_t>(units.count()), 0);
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n)
    if (const int u = units.of_node[static_cast<size_t>(n)]; u >= 0)
      unit_flops[static_cast<size_t>(u)] += planner::op_cost(g, g.node(n), {1}).flops;
  const std::vector<int> stage_of_unit = balance(unit_flops, units.blocks, stages);

  Assignment a;
  a.stage.assign(static_cast<size_t>(g.num_values()), kFree);
  a.runs.assign(static_cast<size_t>(g.num_nodes()), 0);
  a.reads.assign(static_cast<size_t>(g.num_values()), 0);
  a.split.assign(static_cast<size_t>(g.num_nodes()), false);
  auto stage_of = [&](ir::ValueId v) { return a.stage[static_cast<size_t>(v)]; };
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    int largest = kFree;  // the staged operand with the most bytes (ties: the later stage)
    size_t largest_bytes = 0;
    Mask operand_stages = 0;
    for (ir::ValueId v : node.inputs) {
      const int s = stage_of(v);
      if (s == kFree) continue;
      operand_stages |= bit(s);
      const size_t bytes = g.type(v).bytes();
      if (largest == kFree || bytes > largest_bytes || (bytes == largest_bytes && s > largest)) {
        largest = s;
        largest_bytes = bytes;
      }
    }
    const int u = units.of_node[static_cast<size_t>(n)];
    if (operand_stages == 0 && u < 0) continue;  // free: runs where it is read (below)
    if (is_grouped_collective(node) && std::popcount(operand_stages) > 1) {
      a.split[static_cast<size_t>(n)] = true;
      a.runs[static_cast<size_t>(n)] = operand_stages;
      for (size_t k = 0; k < node.outputs.size(); ++k)
        a.stage[static_cast<size_t>(node.outputs[k])] = stage_of(node.inputs[k]);
      continue;
    }
    const int s = u >= 0 ? stage_of_unit[static_cast<size_t>(u)] : largest;
    a.runs[static_cast<size_t>(n)] = bit(s);
    for (ir::ValueId v : node.outputs) a.stage[static_cast<size_t>(v)] = s;
  }
  // Free nodes run on every stage that reads their outputs, latest first; a requested output
  // computed from inputs alone is computed everywhere.
  const std::unordered_set<ir::ValueId> requested(outputs.begin(), outputs.end());
  const Mask all = stages == 64 ? ~Mask{0} : bit(stages) - 1;
  for (ir::NodeId n = g.num_nodes() - 1; n >= 0; --n) {
    const ir::Node& node = g.node(n);
    Mask& runs = a.runs[static_cast<size_t>(n)];
    if (runs == 0) {
      for (ir::ValueId v : node.outputs) {
        runs |= a.reads[static_cast<size_t>(v)];
        if (requested.count(v) && node.op != OpKind::Input) runs = all;
      }
      // A requested input nobody reads (a parameter without a gradient) stays on stage 0.
      if (runs == 0 && node.op == OpKind::Input && requested.count(node.outputs[0])) runs = bit(0);
    }
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const ir::ValueId v = node.inputs[k];
      // A grouped collective run per stage reads each operand on the operand's stage.
      a.reads[static_cast<size_t>(v)] |=
          a.split[static_cast<size_t>(n)] && stage_of(v) != kFree ? bit(stage_of(v)) : runs;
    }
  }
  return a;
}

// The step's state (parameters, optimizer moments, gradients): stays on its stage.
std::vector<bool> state_values(const ir::Graph& g) {
  std::vector<bool> state(static_cast<size_t>(g.num_values()), false);
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.op != OpKind::AdamWUpdate) continue;
    for (ir::ValueId v : node.inputs) state[static_cast<size_t>(v)] = true;
    for (ir::ValueId v : node.outputs) state[static_cast<size_t>(v)] = true;
  }
  for (ir::ValueId v : g.gradients()) state[static_cast<size_t>(v)] = true;
  return state;
}

void check_inputs(const ir::Graph& g, const Assignment& a, int stages) {
  std::vector<bool> updated(static_cast<size_t>(g.num_values()), false);
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n)
    if (g.node(n).op == OpKind::AdamWUpdate)
      updated[static_cast<size_t>(g.node(n).inputs[0])] = true;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.op != OpKind::Input) continue;
    const Mask runs = a.runs[static_cast<size_t>(n)];
    SOLO_CHECK(!updated[static_cast<size_t>(node.outputs[0])] || std::popcount(runs) <= 1,
               "pipeline parallelism: parameter '", node.name,
               "' is read on several stages (a tied weight); each trained parameter must live "
               "on one stage: untie it or use pp=1");
    if (!node.attrs.has(ir::kHeldStageAttr)) continue;
    const int64_t held = node.attrs.i(ir::kHeldStageAttr);
    SOLO_CHECK(node.attrs.i(ir::kHeldStagesAttr) == stages && runs == bit(static_cast<int>(held)),
               "input '", node.name, "' is held on pipeline stage ", held, " of ",
               node.attrs.i(ir::kHeldStagesAttr), ", but this plan of ", stages,
               " stages reads it elsewhere; keep the plan that trained it");
  }
}

}  // namespace

ir::Graph pipeline_stage(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int stages,
                         int stage, std::vector<ir::ValueId>& value_of, PipelineStats* stats) {
  SOLO_CHECK(stages >= 1 && stages <= 64 && stage >= 0 && stage < stages, "pipeline: stage ", stage,
             " of ", stages, " does not exist (1 to 64 stages)");
  const Assignment a = assign(g, outputs, stages);
  check_inputs(g, a, stages);
  const Mask here = bit(stage);
  ir::Graph out;
  value_of.assign(static_cast<size_t>(g.num_values()), ir::kNoValue);
  auto local = [&](ir::ValueId v) { return value_of[static_cast<size_t>(v)]; };
  PipelineStats local_stats;
  int tag = 0;
  // One transfer of v from stage `from` to `to`, at the same place in every stage's order.
  auto transfer = [&](ir::ValueId v, int from, int to) {
    const int t = tag++;
    if (stage == from) local_stats.sends.push_back(ir::send(out, local(v), to, t, kPipelineGroup));
    if (stage == to)
      value_of[static_cast<size_t>(v)] = ir::recv(out, g.type(v), from, t, kPipelineGroup);
  };
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    const Mask runs = a.runs[static_cast<size_t>(n)];
    if (runs & here) {
      std::vector<ir::ValueId> inputs;
      std::vector<ir::TensorType> types;
      std::vector<size_t> kept;  // outputs this stage computes
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        const ir::ValueId v = node.inputs[k];
        if (a.split[static_cast<size_t>(n)] && a.stage[static_cast<size_t>(v)] != stage) continue;
        SOLO_CHECK(local(v) != ir::kNoValue, "pipeline: ", g.describe(n), " on stage ", stage,
                   " reads a value the stage has not got; this is a bug of the pipeline pass");
        inputs.push_back(local(v));
        kept.push_back(k);
      }
      if (a.split[static_cast<size_t>(n)]) {
        for (size_t k : kept) types.push_back(g.type(node.outputs[k]));
        const std::vector<ir::ValueId> outs = out.add_node_from(
            g.scope_of(n), node.no_grad, node.op, std::move(inputs), std::move(types), node.attrs);
        for (size_t i = 0; i < kept.size(); ++i)
          value_of[static_cast<size_t>(node.outputs[kept[i]])] = outs[i];
      } else {
        const std::vector<ir::ValueId> outs = out.copy_node(g, node, std::move(inputs));
        for (size_t k = 0; k < outs.size(); ++k)
          value_of[static_cast<size_t>(node.outputs[k])] = outs[k];
      }
    }
    ir::OriginGuard origin(g.scope_of(n), node.no_grad);
    for (ir::ValueId v : node.outputs) {
      const int from = a.stage[static_cast<size_t>(v)];
      if (from == kFree) continue;
      const Mask to = a.reads[static_cast<size_t>(v)] & ~bit(from);
      for (int s = 0; s < stages; ++s)
        if (to & bit(s)) transfer(v, from, s);
    }
  }
  const std::vector<bool> state = state_values(g);
  ir::OriginGuard origin("", true);
  std::unordered_set<ir::ValueId> done;
  for (ir::ValueId v : outputs) {
    if (!done.insert(v).second) continue;
    // Decided alike on every stage: where v is made, and which stages have it by now.
    int from = a.stage[static_cast<size_t>(v)];
    if (from == kFree && g.producer(v).op != OpKind::Input) continue;  // made everywhere
    if (from == kFree) from = std::countr_zero(a.runs[static_cast<size_t>(g.value(v).producer)]);
    if (state[static_cast<size_t>(v)] || g.producer(v).op == OpKind::Input)
      local_stats.output_stage.emplace(v, from);
  }
  for (ir::ValueId v : outputs) {  // the others reach every stage (the loss)
    if (!done.erase(v)) continue;
    const int from = a.stage[static_cast<size_t>(v)];
    if (from == kFree || local_stats.output_stage.count(v)) continue;
    const Mask has = bit(from) | a.reads[static_cast<size_t>(v)];
    for (int s = 0; s < stages; ++s)
      if (!(has & bit(s))) transfer(v, from, s);
  }
  for (ir::ValueId v : g.gradients())
    if (local(v) != ir::kNoValue) out.mark_gradient(local(v));
  local_stats.transfers = tag;
  if (stats) *stats = std::move(local_stats);
  return out;
}

}  // namespace solo::compile
