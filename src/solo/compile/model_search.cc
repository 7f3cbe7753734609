#include "solo/compile/model_search.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

#include "solo/core/error.h"
#include "solo/planner/op_cost.h"

namespace solo::compile {

namespace {

// What the search reads of one compiled program (one micro-batch, a given depth); every
// field grows by the same amount per block.
struct Piece {
  std::string error;  // the compile failed: why
  double peak = 0;    // steady step on the device: inputs + the memory plan
  double parameters = 0, optimizer_states = 0;
  double gradients = 0;    // this rank's gradients as the optimizer reads them (accumulated)
  double activations = 0;  // what a micro-batch keeps from its forward to its backward
  double boundary = 0;     // bytes of the residual stream: what a pipeline stage sends
  double seconds_micro = 0, seconds_once = 0;  // per micro-batch / once a step
  double flops_micro = 0, flops_once = 0, sent_micro = 0, sent_once = 0;
  double inter_micro = 0, inter_once = 0;  // of the bytes sent, those between hosts
};

// A compile shared by candidates: everything but pp and the micro-batch count.
struct PieceKey {
  int dp, tp, zero;
  bool recompute, low_prec;
  int64_t rows;  // sequences a rank runs per micro-batch
  int depth;
  auto tie() const { return std::tie(dp, tp, zero, recompute, low_prec, rows, depth); }
  bool operator<(const PieceKey& o) const { return tie() < o.tie(); }
};

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Once a step: the optimizer's update and what follows it, and the gradient reductions of
// the data-parallel group (their outputs are the marked gradients).
std::vector<bool> once_a_step(const ir::Graph& g, const std::vector<ir::NodeId>& schedule) {
  std::set<ir::ValueId> gradients(g.gradients().begin(), g.gradients().end());
  std::vector<bool> once(static_cast<size_t>(g.num_nodes()), false);
  bool updating = false;
  for (ir::NodeId n : schedule) {
    const ir::Node& node = g.node(n);
    updating = updating || node.op == OpKind::AdamWUpdate;
    bool reduces = false;
    if ((node.op == OpKind::AllReduce || node.op == OpKind::ReduceScatter) &&
        node.attrs.i_or("group", 0) == 0)
      for (ir::ValueId v : node.outputs) reduces = reduces || gradients.count(v) > 0;
    once[static_cast<size_t>(n)] = updating || reduces;
  }
  return once;
}

Piece evaluate_piece(const TracedStep& step, const PieceKey& k, const SearchOptions& o) {
  Piece p;
  try {
    const PlanSpec plan{
        .dp = k.dp, .tp = k.tp, .zero = k.zero, .recompute = k.recompute, .low_prec = k.low_prec};
    CompileOptions options = o.compile;
    options.state_as_blocks = true;
    const Program prog = compile(*step.graph, step.outputs, {}, plan, options);
    const ir::Graph& g = *prog.graph;
    p.peak = static_cast<double>(input_bytes(g) + prog.memory.peak_bytes());
    p.parameters = static_cast<double>(prog.resident.parameters);
    p.optimizer_states = static_cast<double>(prog.resident.optimizer_states);
    for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
      const ir::Node& node = g.node(n);
      if (node.op == OpKind::AdamWUpdate)
        p.gradients += static_cast<double>(g.type(node.inputs[1]).bytes());
      if (node.op == OpKind::Embedding && p.boundary == 0)
        p.boundary = static_cast<double>(g.type(node.outputs[0]).bytes());
    }
    // The forward values of the micro-batch (made from its rows, not from the weights alone:
    // a weight's low-precision copy is the stage's) that a backward node reads, with
    // recomputation the checkpoints: what a micro-batch in flight holds until its backward,
    // not the step's working set.
    std::vector<bool> of_rows(static_cast<size_t>(g.num_values()), false);
    std::vector<bool> kept(static_cast<size_t>(g.num_values()), false);
    for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
      const ir::Node& node = g.node(n);
      bool rows = node.op == OpKind::Input && node.batch;
      for (ir::ValueId v : node.inputs) rows = rows || of_rows[static_cast<size_t>(v)];
      for (ir::ValueId v : node.outputs) of_rows[static_cast<size_t>(v)] = rows;
      if (!node.no_grad) continue;
      for (ir::ValueId v : node.inputs) {
        const ir::Node& producer = g.producer(v);
        if (of_rows[static_cast<size_t>(v)] && !producer.no_grad && !kept[static_cast<size_t>(v)]) {
          kept[static_cast<size_t>(v)] = true;
          p.activations += static_cast<double>(g.type(v).bytes());
        }
      }
    }
    const std::vector<int64_t> groups = {k.dp, k.tp};
    // Ranks are laid out tp innermost, then dp: the dp group spans tp x dp devices.
    const bool dp_crosses = o.devices_per_host > 0 && k.dp * k.tp > o.devices_per_host;
    const std::vector<bool> once = once_a_step(g, prog.memory.schedule);
    // Each node's time is what it adds to the step's end (overlapped collectives add only
    // what compute does not hide), counted per micro-batch or once a step.
    planner::Timeline timeline(g, o.compile.async_collectives);
    for (ir::NodeId n : prog.memory.schedule) {
      const ir::Node& node = g.node(n);
      const planner::OpCost c = planner::op_cost(g, node, groups);
      const bool crosses = c.communication && node.attrs.i_or("group", 0) == 0 && dp_crosses;
      const double s = timeline.add(node, c, planner::node_seconds(c, o.profile, crosses));
      const bool one = once[static_cast<size_t>(n)];
      (one ? p.seconds_once : p.seconds_micro) += s;
      (one ? p.flops_once : p.flops_micro) += c.flops;
      (one ? p.sent_once : p.sent_micro) += c.bytes_sent;
      if (crosses) (one ? p.inter_once : p.inter_micro) += c.bytes_sent;
    }
  } catch (const std::exception& e) {
    p.error = e.what();
  }
  return p;
}

// The two depths compiled: kShallow blocks and one more.
constexpr int kShallow = 1;

// The value at `depth` blocks on the line through the two depths.
double at_depth(double shallow, double deeper, int depth) {
  return shallow + (deeper - shallow) * (depth - kShallow);
}

}  // namespace

std::vector<PlanSpec> model_candidate_plans(const ModelCandidateSpace& space) {
  const int devices = space.flavor.devices;
  std::vector<PlanSpec> plans;
  for (int pp = 1; pp <= devices; ++pp) {
    if (devices % pp != 0 || space.layers % pp != 0) continue;
    CandidateSpace stage = space.flavor;
    stage.devices = devices / pp;
    stage.pipeline = false;  // the stages are this loop's
    if (stage.devices_per_host > stage.devices) stage.devices_per_host = stage.devices;
    for (PlanSpec plan : candidate_plans(stage)) {
      if (space.batch % plan.dp != 0) continue;
      const int64_t rows = space.batch / plan.dp;  // a rank's sequences a step
      std::set<int64_t> micro_counts;
      for (int64_t micro_rows : {int64_t{1}, int64_t{2}, rows})
        if (micro_rows <= rows && rows % micro_rows == 0 && rows / micro_rows >= pp)
          micro_counts.insert(rows / micro_rows);
      for (int64_t m : micro_counts) {
        plan.pp = pp;
        plan.micro_batches = static_cast<int>(m);
        plans.push_back(plan);
      }
    }
  }
  return plans;
}

SearchResult search_model(const StepTracer& trace, const ModelSearchOptions& mo) {
  const SearchOptions& o = mo.search;
  SearchResult r;
  const auto start = std::chrono::steady_clock::now();
  std::map<std::pair<int, int64_t>, TracedStep> traced;  // (depth, global batch) -> step
  auto traced_step = [&](int depth, int64_t batch) -> const TracedStep& {
    auto key = std::make_pair(depth, batch);
    auto it = traced.find(key);
    if (it == traced.end()) it = traced.emplace(key, trace(depth, batch)).first;
    return it->second;
  };
  const TracedStep& probe = traced_step(1, mo.batch);
  r.tokens = tokens_per_step(*probe.graph);
  const ModelCandidateSpace space{
      {o.devices, o.devices_per_host, has_mixed_precision(*probe.graph)}, mo.layers, mo.batch};
  for (const PlanSpec& plan : o.plans.empty() ? model_candidate_plans(space) : o.plans) {
    Candidate c;
    c.plan = plan;
    r.candidates.push_back(std::move(c));
  }
  // The distinct compiles, traced serially first.
  std::map<PieceKey, Piece> pieces;
  std::map<int, std::string> unsplittable;  // tp -> why the blocks do not split over it
  for (Candidate& c : r.candidates) {
    const PlanSpec& p = c.plan;
    const int64_t per_micro = mo.batch / p.micro_batches;  // global sequences a micro-batch
    if (mo.batch % (p.dp * p.micro_batches) != 0 || mo.layers % p.pp != 0) {
      char why[160];
      std::snprintf(why, sizeof why, "the batch of %lld and %d blocks do not split into %s",
                    static_cast<long long>(mo.batch), mo.layers, p.spec().c_str());
      c.dropped = why;
      continue;
    }
    if (p.tp > 1) {
      auto it = unsplittable.find(p.tp);
      if (it == unsplittable.end())
        it = unsplittable.emplace(p.tp, tensor_parallel_reason(*probe.graph, p.tp)).first;
      c.dropped = it->second;
    }
    if (!c.dropped.empty()) continue;
    for (int depth : {kShallow, kShallow + 1}) {
      traced_step(depth, per_micro);
      pieces.emplace(PieceKey{p.dp, p.tp, p.zero, p.recompute, p.low_prec, per_micro / p.dp, depth},
                     Piece{});
    }
  }
  std::vector<std::pair<const PieceKey*, Piece*>> work;
  for (auto& [key, piece] : pieces) work.emplace_back(&key, &piece);
  run_on_threads(work.size(), o.threads, [&](size_t i) {
    const PieceKey& k = *work[i].first;
    *work[i].second = evaluate_piece(traced.at({k.depth, k.rows * k.dp}), k, o);
  });
  r.compile_ms = ms_since(start);

  const auto select = std::chrono::steady_clock::now();
  for (Candidate& c : r.candidates) {
    if (!c.dropped.empty()) continue;
    const PlanSpec& p = c.plan;
    const int64_t rows = mo.batch / p.micro_batches / p.dp;
    const Piece& one = pieces.at({p.dp, p.tp, p.zero, p.recompute, p.low_prec, rows, kShallow});
    const Piece& two = pieces.at({p.dp, p.tp, p.zero, p.recompute, p.low_prec, rows, kShallow + 1});
    if (!one.error.empty() || !two.error.empty()) {
      c.dropped = one.error.empty() ? two.error : one.error;
      continue;
    }
    const int depth = mo.layers / p.pp;
    auto at = [&](double Piece::*field) { return at_depth(one.*field, two.*field, depth); };
    const auto m = static_cast<double>(p.micro_batches);
    const double in_flight = p.pp;  // 1F1B: the first stage holds pp micro-batches
    const double peak = at(&Piece::peak) + (p.micro_batches > 1 ? at(&Piece::gradients) : 0) +
                        (in_flight - 1) * at(&Piece::activations);
    c.peak_bytes = static_cast<size_t>(peak);
    c.resident.parameters = static_cast<size_t>(at(&Piece::parameters));
    c.resident.optimizer_states = static_cast<size_t>(at(&Piece::optimizer_states));
    c.not_runnable = not_runnable_reason(p);
    if (o.device_memory != 0 && c.peak_bytes > o.device_memory) {
      char why[160];
      std::snprintf(why, sizeof why, "needs %.2f GiB of the device's %.2f GiB", peak / (1u << 30),
                    static_cast<double>(o.device_memory) / (1u << 30));
      c.dropped = why;
      continue;
    }
    c.fits = true;
    const double slots = m + p.pp - 1;
    double seconds = slots * at(&Piece::seconds_micro) + at(&Piece::seconds_once);
    c.flops = m * at(&Piece::flops_micro) + at(&Piece::flops_once);
    c.comm_bytes = m * at(&Piece::sent_micro) + at(&Piece::sent_once);
    c.comm_inter_host_bytes = m * at(&Piece::inter_micro) + at(&Piece::inter_once);
    if (p.pp > 1) {  // each slot sends its activations on and their gradient back
      // Stages are contiguous ranges of devices: once they span hosts, a stage boundary
      // falls on a host boundary, and the pipeline runs at that link's pace.
      const bool crosses = o.devices_per_host > 0 && o.devices > o.devices_per_host;
      planner::OpCost send;
      send.communication = true;
      send.bytes_sent = one.boundary;
      seconds += 2 * slots * planner::node_seconds(send, o.profile, crosses);
      c.comm_bytes += 2 * m * one.boundary;
      if (crosses) c.comm_inter_host_bytes += 2 * m * one.boundary;
    }
    c.step_seconds = seconds;
  }
  select_best(r, o.runnable_only);
  r.select_ms = ms_since(select);
  return r;
}

}  // namespace solo::compile
