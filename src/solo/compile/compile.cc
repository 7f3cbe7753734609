#include <unordered_map>
#include <unordered_set>

#include "solo/compile/data_parallel.h"
#include "solo/compile/pipeline.h"
#include "solo/compile/prefetch.h"
#include "solo/compile/program.h"
#include "solo/compile/recompute.h"
#include "solo/compile/tensor_parallel.h"
#include "solo/compile/zero.h"
#include "solo/core/error.h"

namespace solo::compile {

ir::ValueId Program::local(ir::ValueId step_value) const {
  SOLO_CHECK(step_value >= 0 && step_value < static_cast<ir::ValueId>(value_of.size()),
             "compile: value ", step_value, " is not a value of the compiled step");
  return value_of[static_cast<size_t>(step_value)];
}

int64_t Program::shards_of(ir::ValueId local_output) const {
  auto it = output_shards.find(local_output);
  return it == output_shards.end() ? 1 : it->second;
}

namespace {
std::vector<ir::ValueId> translate(const Program& p, const std::vector<ir::ValueId>& values) {
  std::vector<ir::ValueId> out;
  out.reserve(values.size());
  for (ir::ValueId v : values)
    if (p.local(v) != ir::kNoValue) out.push_back(p.local(v));  // not another stage's
  return out;
}

// One rank's graph with no rewrite: the step itself.
ir::Graph copy(const ir::Graph& g, std::vector<ir::ValueId>& value_of) {
  ir::Graph out;
  value_of.assign(static_cast<size_t>(g.num_values()), ir::kNoValue);
  for (int n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    std::vector<ir::ValueId> inputs;
    for (ir::ValueId v : node.inputs) inputs.push_back(value_of[static_cast<size_t>(v)]);
    const std::vector<ir::ValueId> outs = out.copy_node(g, node, std::move(inputs));
    for (size_t k = 0; k < outs.size(); ++k)
      value_of[static_cast<size_t>(node.outputs[k])] = outs[k];
  }
  for (ir::ValueId v : g.gradients()) out.mark_gradient(value_of[static_cast<size_t>(v)]);
  return out;
}
ResidentBytes resident_bytes(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                             const Program& p) {
  const std::unordered_set<ir::ValueId> requested(outputs.begin(), outputs.end());
  ResidentBytes r;
  auto held = [&](ir::ValueId v) {
    return requested.count(v) && p.local(v) != ir::kNoValue ? p.graph->type(p.local(v)).bytes()
                                                            : size_t{0};
  };
  for (ir::NodeId n = 0; n < step.num_nodes(); ++n) {
    const ir::Node& node = step.node(n);
    if (node.op != OpKind::AdamWUpdate) continue;
    r.parameters += held(node.outputs[0]);
    r.optimizer_states += held(node.outputs[1]) + held(node.outputs[2]);
    r.gradients += held(node.inputs[1]);
  }
  return r;
}
}  // namespace

Program compile(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                const std::vector<ir::ValueId>& donatable, const PlanSpec& plan,
                const CompileOptions& options) {
  for (ir::NodeId n = 0; n < step.num_nodes(); ++n) {
    SOLO_CHECK(plan.tp > 1 || !step.node(n).attrs.has(ir::kHeldAxisAttr), "compile: input '",
               step.node(n).name, "' is held as a tensor-parallel block, but plan ", plan.str(),
               " has no tensor parallelism; keep the plan that trained it");
    SOLO_CHECK(plan.pp > 1 || !step.node(n).attrs.has(ir::kHeldStageAttr), "compile: input '",
               step.node(n).name, "' is held on another pipeline stage, but plan ", plan.str(),
               " has no pipeline parallelism; keep the plan that trained it");
  }
  Program p;
  p.plan = plan;
  ir::Graph graph = copy(step, p.value_of);
  // Each pass maps the values of the graph before it to its own; p.value_of follows.
  auto then = [&](auto&& pass) {
    std::vector<ir::ValueId> map;
    ir::Graph next = pass(static_cast<const ir::Graph&>(graph), map);
    for (ir::ValueId& v : p.value_of)
      if (v != ir::kNoValue) v = map[static_cast<size_t>(v)];
    graph = std::move(next);
  };
  if (plan.recompute)
    then(
        [](const ir::Graph& g, std::vector<ir::ValueId>& map) { return recompute_blocks(g, map); });
  std::unordered_map<ir::ValueId, int> split_outputs;  // step output -> its block's axis
  if (plan.tp > 1)
    then([&](const ir::Graph& g, std::vector<ir::ValueId>& map) {
      SplitStats tp;
      ir::Graph split = tensor_parallel(g, translate(p, outputs), plan.tp, map, &tp,
                                        options.state_as_blocks, options.half_sums);
      p.tp_gathers = tp.gathered;
      for (ir::ValueId v : outputs)  // by step value: the passes after this one renumber
        if (auto it = tp.output_axes.find(map[static_cast<size_t>(p.local(v))]);
            it != tp.output_axes.end())
          split_outputs.emplace(v, it->second);
      return split;
    });
  if (options.state_as_blocks && plan.zero > 0)
    then([&](const ir::Graph& g, std::vector<ir::ValueId>& map) {
      map.resize(static_cast<size_t>(g.num_values()));  // value for value
      for (size_t v = 0; v < map.size(); ++v) map[v] = static_cast<ir::ValueId>(v);
      return with_state_as_blocks(g, plan.dp, plan.zero);
    });
  // ZeRO-2 and 3 reduce-scatter each gradient as soon as it is made (one per bucket), so
  // that the whole gradients never coexist.
  const size_t bucket_bytes = plan.zero >= 2 ? 1 : kGradientBucketBytes;
  if (plan.dp > 1)
    then([&](const ir::Graph& g, std::vector<ir::ValueId>& map) {
      DataParallelStats stats;
      ir::Graph split = data_parallel(g, translate(p, outputs), plan.dp, map, bucket_bytes, &stats);
      p.batch_gathers = stats.gathered;
      return split;
    });
  if (plan.zero > 0 || reads_blocks(graph))
    then([&](const ir::Graph& g, std::vector<ir::ValueId>& map) {
      return shard_state(g, translate(p, outputs),
                         {.ranks = plan.dp, .zero = plan.zero, .low_prec = plan.low_prec}, map,
                         p.output_shards);
    });
  // Prefetching holds a layer's weights whole longer; only an overlapping communicator gains.
  if (plan.zero == 3 && options.async_collectives)
    then(
        [](const ir::Graph& g, std::vector<ir::ValueId>& map) { return prefetch_gathers(g, map); });
  // Last: every value has this rank's shape by now, so a stage sends what its peer expects.
  if (plan.pp > 1)
    then([&](const ir::Graph& g, std::vector<ir::ValueId>& map) {
      PipelineStats stats;
      ir::Graph cut = pipeline_stage(g, translate(p, outputs), plan.pp, options.stage, map, &stats);
      for (ir::ValueId v : outputs)
        if (auto it = stats.output_stage.find(p.local(v)); it != stats.output_stage.end()) {
          // Every stage knows how the others hold their state, so all trace the same step.
          const auto held = p.output_shards.find(p.local(v));
          const auto axis = split_outputs.find(v);
          p.output_stage.emplace(
              v, Program::StagedOutput{it->second, held == p.output_shards.end() ? 1 : held->second,
                                       axis == split_outputs.end() ? -1 : axis->second});
        }
      std::unordered_map<ir::ValueId, int64_t> shards;  // renumbered; another stage's dropped
      for (const auto& [v, n] : p.output_shards)
        if (map[static_cast<size_t>(v)] != ir::kNoValue)
          shards.emplace(map[static_cast<size_t>(v)], n);
      p.output_shards = std::move(shards);
      p.transfers = stats.transfers;
      p.sends = stats.sends;
      return cut;
    });
  auto shared = std::make_shared<const ir::Graph>(std::move(graph));
  p.graph = shared;
  for (const auto& [v, axis] : split_outputs)
    if (p.local(v) != ir::kNoValue) p.output_axes.emplace(p.local(v), axis);
  p.resident = resident_bytes(step, outputs, p);
  std::vector<ir::ValueId> requested = translate(p, outputs);
  requested.insert(requested.end(), p.sends.begin(), p.sends.end());  // so that they run
  p.memory = runtime::plan_memory(*shared, requested, translate(p, donatable),
                                  options.async_collectives && plan.dp > 1);
  return p;
}

}  // namespace solo::compile
