#include "solo/compile/search.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <sstream>
#include <thread>

#include "solo/compile/zero.h"
#include "solo/planner/op_cost.h"

namespace solo::compile {

namespace {

constexpr double kTie = 0.02;

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

double mib(size_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

bool is_weight(const ir::Graph& g, ir::ValueId v) {
  const ir::Node& producer = g.producer(v);
  return producer.op == OpKind::Input && !producer.batch && g.shape(v).rank() == 2;
}

// The step of every pipeline stage (one program without stages).
std::vector<Program> compile_stages(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                                    const std::vector<ir::ValueId>& donatable, const PlanSpec& plan,
                                    CompileOptions options) {
  std::vector<Program> stages;
  for (int s = 0; s < plan.pp; ++s) {
    options.stage = s;
    stages.push_back(compile(step, outputs, donatable, plan, options));
  }
  return stages;
}

void evaluate(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
              const std::vector<ir::ValueId>& donatable, const SearchOptions& o, Candidate& c) {
  if (!c.dropped.empty()) return;  // its shapes do not split (search_plans)
  try {
    c.not_runnable = not_runnable_reason(c.plan);
    // The steps after the first read the state the plan leaves as blocks: they are costed.
    CompileOptions later_options = o.compile;
    later_options.state_as_blocks = true;
    const std::vector<Program> later =
        compile_stages(step, outputs, donatable, c.plan, later_options);
    std::vector<Program> first;
    if (!o.steady) first = compile_stages(step, outputs, donatable, c.plan, o.compile);
    for (size_t s = 0; s < later.size(); ++s) {
      size_t peak = 0;
      if (o.steady) {
        peak = input_bytes(*later[s].graph) + later[s].memory.peak_bytes();
      } else {
        const Program& p = first[s];
        size_t read = 0;  // mapped inputs, read into the device as the program's inputs are
        for (ir::ValueId v : o.mapped)
          if (p.local(v) != ir::kNoValue) read += p.graph->type(p.local(v)).bytes();
        peak = o.held_bytes + read + p.memory.peak_bytes();
      }
      if (c.plan.pp > 1) c.stage_peak_bytes.push_back(peak);
      if (peak >= c.peak_bytes) c.resident = later[s].resident;  // the fullest stage's
      c.peak_bytes = std::max(c.peak_bytes, peak);
    }
    if (o.device_memory != 0 && c.peak_bytes > o.device_memory) {
      char why[160];
      std::snprintf(why, sizeof why, "needs %.2f MiB of the device's %.2f MiB", mib(c.peak_bytes),
                    mib(o.device_memory));
      c.dropped = why;
      return;
    }
    c.fits = true;
    // Group 0 is data-parallel (ranks tp apart: across hosts once the flavor has several),
    // group 1 tensor-parallel (within a host), group 2 the pipeline's (stages are blocks of
    // dp x tp ranks: across hosts once there are several).
    const std::vector<int64_t> groups = {c.plan.dp, c.plan.tp, c.plan.pp};
    const bool hosts = o.devices_per_host > 0 && o.devices > o.devices_per_host;
    const bool dp_hosts = hosts && c.plan.dp * c.plan.tp > o.devices_per_host;
    const bool pp_hosts = hosts && c.plan.pp > 1;
    // GPipe's schedule: m micro-batches fill pp stages in m + pp - 1 slots of the slowest.
    double slowest = 0;
    for (const Program& p : later) {
      const planner::StepEstimate e =
          planner::estimate_step(*p.graph, p.memory.schedule, o.profile, groups,
                                 {dp_hosts, false, pp_hosts}, o.compile.async_collectives);
      slowest = std::max(slowest, e.seconds);
      c.flops = std::max(c.flops, e.flops);
      double sent = 0, inter_host = 0;  // this stage's device's
      for (ir::NodeId n : p.memory.schedule) {
        const ir::Node& node = p.graph->node(n);
        const double bytes = planner::op_cost(*p.graph, node, groups).bytes_sent;
        const int64_t group = node.attrs.i_or("group", 0);
        sent += bytes;
        if ((dp_hosts && group == 0) || (pp_hosts && group == 2)) inter_host += bytes;
      }
      c.comm_bytes = std::max(c.comm_bytes, sent);
      c.comm_inter_host_bytes = std::max(c.comm_inter_host_bytes, inter_host);
    }
    const double m = static_cast<double>(c.plan.micro_batches);
    c.step_seconds = slowest * (m + c.plan.pp - 1) / m;
  } catch (const std::exception& e) {  // e.g. a batch this plan cannot split
    c.dropped = e.what();
  }
}

}  // namespace

int64_t tokens_per_step(const ir::Graph& g) {
  int64_t tokens = 0;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.op == OpKind::Input && node.batch && !is_floating(g.dtype(node.outputs[0])))
      tokens = std::max(tokens, g.shape(node.outputs[0]).numel());
  }
  return tokens;
}

bool has_mixed_precision(const ir::Graph& g) {
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (node.op == OpKind::Cast && dtype_size(g.dtype(node.outputs[0])) == 2 &&
        is_floating(g.dtype(node.outputs[0])))
      return true;
  }
  return false;
}

size_t input_bytes(const ir::Graph& g) {
  size_t bytes = 0;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n)
    if (g.node(n).op == OpKind::Input) bytes += g.type(g.node(n).outputs[0]).bytes();
  return bytes;
}

std::vector<PlanSpec> candidate_plans(const CandidateSpace& space) {
  std::vector<PlanSpec> plans;
  const int per_host = space.devices_per_host > 0 ? space.devices_per_host : space.devices;
  for (int pp = 1; pp <= (space.pipeline ? space.devices : 1); ++pp) {
    if (space.devices % pp != 0) continue;
    const int stage_devices = space.devices / pp;
    for (int tp = 1; tp <= stage_devices; ++tp) {
      if (stage_devices % tp != 0 || tp > per_host || per_host % tp != 0) continue;
      const int dp = stage_devices / tp;
      const int stages = dp > 1 ? 3 : 0;  // ZeRO shards over data-parallel ranks only
      for (int zero = 0; zero <= stages; ++zero)
        for (bool recompute : {false, true})
          for (bool low_prec : {false, true}) {
            if (low_prec && !(space.mixed_precision && zero == 3)) continue;
            plans.push_back(PlanSpec{.dp = dp,
                                     .tp = tp,
                                     .pp = pp,
                                     .zero = zero,
                                     .recompute = recompute,
                                     .low_prec = low_prec});
          }
    }
  }
  return plans;
}

std::string tensor_parallel_reason(const ir::Graph& step, int tp) {
  char why[300];
  for (ir::NodeId n = 0; n < step.num_nodes(); ++n) {
    const ir::Node& node = step.node(n);
    if (node.op == OpKind::Attention) {
      for (int k : {0, 1}) {
        const int64_t heads = step.shape(node.inputs[static_cast<size_t>(k)])[2];
        if (heads % tp == 0) continue;
        std::snprintf(why, sizeof why, "tp=%d does not divide the %lld %s of %s", tp,
                      static_cast<long long>(heads), k == 0 ? "heads" : "KV heads",
                      step.scope_of(n).c_str());
        return why;
      }
    }
    if (node.op == OpKind::MatMul && is_weight(step, node.inputs[1])) {
      const Shape& w = step.shape(node.inputs[1]);
      if (w[0] % tp == 0 && w[1] % tp == 0) continue;
      std::snprintf(why, sizeof why, "tp=%d does not divide the weight %s of %s", tp,
                    w.str().c_str(), step.scope_of(n).c_str());
      return why;
    }
  }
  return "";
}

SearchResult search_plans(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                          const std::vector<ir::ValueId>& donatable, const SearchOptions& o) {
  SearchResult r;
  r.tokens = tokens_per_step(step);
  const CandidateSpace space{o.devices, o.devices_per_host, has_mixed_precision(step)};
  std::map<int, std::string> unsplittable;  // tp -> why the step does not split over it
  for (const PlanSpec& plan : o.plans.empty() ? candidate_plans(space) : o.plans) {
    Candidate c;
    c.plan = plan;
    if (plan.tp > 1) {
      auto it = unsplittable.find(plan.tp);
      if (it == unsplittable.end())
        it = unsplittable.emplace(plan.tp, tensor_parallel_reason(step, plan.tp)).first;
      c.dropped = it->second;
    }
    r.candidates.push_back(std::move(c));
  }
  const auto start = std::chrono::steady_clock::now();
  // Compiling reads only the step graph: the candidates compile at once, one per thread.
  run_on_threads(r.candidates.size(), o.threads,
                 [&](size_t i) { evaluate(step, outputs, donatable, o, r.candidates[i]); });
  r.compile_ms = ms_since(start);
  const auto select = std::chrono::steady_clock::now();
  select_best(r, o.runnable_only);
  r.select_ms = ms_since(select);
  return r;
}

void run_on_threads(size_t n, int threads, const std::function<void(size_t)>& work) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) work(i);
  };
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  const size_t count = std::min(n, static_cast<size_t>(threads > 0 ? threads : hardware));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < count; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

void select_best(SearchResult& r, bool runnable_only) {
  auto eligible = [&](const Candidate& c) {
    return c.fits && (!runnable_only || c.not_runnable.empty());
  };
  double fastest = 0;
  for (const Candidate& c : r.candidates)
    if (eligible(c) && (fastest == 0 || c.step_seconds < fastest)) fastest = c.step_seconds;
  // Candidates within kTie of the fastest count as equal: the first (least sharded, no
  // recomputation) of them wins, since the profile is rough and each collective costs latency
  // the model sees only roughly.
  for (size_t i = 0; i < r.candidates.size() && r.chosen < 0; ++i)
    if (eligible(r.candidates[i]) && r.candidates[i].step_seconds <= fastest * (1 + kTie))
      r.chosen = static_cast<int>(i);
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const Candidate& c = r.candidates[i];
    if (!c.fits || eligible(c) || (r.chosen >= 0 && c.step_seconds >= fastest * (1 - kTie)))
      continue;
    ++r.set_aside_count;
    if (r.set_aside < 0 ||
        c.step_seconds < r.candidates[static_cast<size_t>(r.set_aside)].step_seconds)
      r.set_aside = static_cast<int>(i);
  }
}

const Candidate* SearchResult::smallest() const {
  const Candidate* best = nullptr;
  for (const Candidate& c : candidates)
    if (c.peak_bytes > 0 && (!best || c.peak_bytes < best->peak_bytes)) best = &c;
  return best;
}

std::string SearchResult::table() const {
  std::ostringstream os;
  char line[400];
  for (const Candidate& c : candidates) {
    if (c.fits)
      std::snprintf(line, sizeof line, "  %-100s %9.3f s %10.2f MiB\n", c.plan.str().c_str(),
                    c.step_seconds, mib(c.peak_bytes));
    else
      std::snprintf(line, sizeof line, "  %-100s dropped: %s\n", c.plan.str().c_str(),
                    c.dropped.c_str());
    os << line;
  }
  return os.str();
}

std::string SearchResult::report() const {
  std::ostringstream os;
  size_t fitting = 0;
  for (const Candidate& c : candidates) fitting += c.fits;
  char line[400];
  std::snprintf(line, sizeof line,
                "[info] The number of candidates is %zu.\n"
                "[info] Parallel graph compile finished: %zu candidates in %.0f ms.\n"
                "[info] The number of possible candidates is %zu.",
                candidates.size(), candidates.size(), compile_ms, fitting);
  os << line;
  if (fitting < candidates.size()) {
    for (const Candidate& c : candidates)
      if (!c.fits) {  // the first reason stands for the rest
        os << "   (" << candidates.size() - fitting << " dropped; " << c.plan.str() << ": "
           << c.dropped << ")";
        break;
      }
  }
  os << "\n";
  if (set_aside >= 0) {
    const Candidate& a = candidates[static_cast<size_t>(set_aside)];
    std::snprintf(line, sizeof line,
                  "[info] Set aside %d faster candidate(s) the runtime cannot run yet (%s); the "
                  "fastest: %s, predicted step %.3f s\n",
                  set_aside_count, a.not_runnable.c_str(), a.plan.str().c_str(), a.step_seconds);
    os << line;
  }
  if (chosen < 0) return os.str();
  const Candidate& b = best();
  std::snprintf(line, sizeof line, "[info] Best candidate selected in %.1f ms: %s\n", select_ms,
                b.plan.str().c_str());
  os << line;
  if (tokens > 0 && b.step_seconds > 0)
    std::snprintf(line, sizeof line, "[info]   predicted step %.3f s, %.0f tokens/s\n",
                  b.step_seconds, static_cast<double>(tokens) / b.step_seconds);
  else
    std::snprintf(line, sizeof line, "[info]   predicted step %.3f s\n", b.step_seconds);
  os << line;
  const ResidentBytes& m = b.resident;
  const size_t others = b.peak_bytes > m.total() ? b.peak_bytes - m.total() : 0;
  std::snprintf(line, sizeof line,
                "[info]   peak memory/device %.2f MiB: parameters %.2f, gradients %.2f, "
                "optimizer state %.2f (as the plan keeps them), activations, workspace and "
                "the step's other inputs %.2f\n",
                mib(b.peak_bytes), mib(m.parameters), mib(m.gradients), mib(m.optimizer_states),
                mib(others));
  os << line;
  return os.str();
}

planner::DeviceProfile assumed_cpu_profile() {
  planner::DeviceProfile p;
  p.name = "cpu (assumed)";
  p.memory_bytes = 0;
  p.matrix_flops_16bit = 50e9;  // bf16 GEMMs widen to f32 on the host
  p.vector_flops_32bit = 50e9;
  p.memory_bandwidth = 10e9;
  p.intra_host_link = 5e9;  // MPI over shared memory
  p.inter_host_link = 1e9;
  p.kernel_launch_s = 2e-6;
  p.collective_latency_s = 20e-6;
  return p;
}

}  // namespace solo::compile
