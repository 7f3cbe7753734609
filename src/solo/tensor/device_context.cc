#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_set>

#include "solo/compile/data_parallel.h"
#include "solo/compile/search.h"
#include "solo/compile/splitter.h"
#include "solo/core/error.h"
#include "solo/core/hash.h"
#include "solo/core/user_dirs.h"
#include "solo/ir/ops.h"
#include "solo/tensor/cpu_profile.h"
#include "solo/tensor/tensor_impl.h"

#ifdef SOLO_HAVE_NCCL
#include "solo/comm/nccl/nccl_communicator.h"
#endif

namespace solo {

DeviceContext::DeviceContext(const Device& d)
    : device_(d), backend_(make_backend(d.type)), trace_(std::make_shared<Trace>()) {
  const char* env = std::getenv("SOLO_PROFILE");
  if (env && std::string(env) == "1") profile_ = std::make_unique<runtime::OpProfile>();
  const char* check = std::getenv("SOLO_CHECK_MEMORY");
  check_memory_ = check && std::string(check) == "1";
  const char* finite = std::getenv("SOLO_CHECK_FINITE");
  check_finite_ = finite && std::string(finite) == "1";
  const char* graphs = std::getenv("SOLO_CUDA_GRAPHS");
  if (graphs) {
    const std::string g = graphs;
    SOLO_CHECK(g == "0" || g == "1", "SOLO_CUDA_GRAPHS must be 0 or 1, got '", g, "'");
    replay_ = g == "1";
  }
}

DeviceContext::~DeviceContext() {
  if (profile_)
    std::fprintf(stderr, "[profile] time per op on %s:\n%s", device_.type.c_str(),
                 profile_->report().c_str());
}

DeviceContext& device_context(const Device& d) {
  // Devices are process-wide, like CUDA devices; contexts live until exit.
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<DeviceContext>> contexts;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = contexts[d.type];
  if (!slot) slot = std::make_unique<DeviceContext>(d);
  return *slot;
}

void DeviceContext::set_data_parallel(comm::Communicator* c) {
  // Plans (and their recordings) were made for the old communicator: drop them first, since
  // NCCL will not destroy a communicator while a CUDA graph holding its kernels lives.
  plan_cache_.clear();
  mesh_ = MeshCommunicators();
  data_parallel_ = nullptr;
  backend_->set_wait_check(nullptr);
  device_comm_.reset();  // collective: every rank detaches together, as it attached
  plan_ = compile::PlanSpec{};
  plan_searched_ = true;
  if (c) {  // detaching (null) goes back to one device and checks nothing
    const char* forced = std::getenv("SOLO_PLAN");
    compile::PlanSpec plan;
    plan_searched_ = false;
    plan_forced_ = forced && *forced;
    if (plan_forced_)
      plan = compile::parse_plan_spec(forced);
    else
      plan.dp = c->size();
    compile::check_runnable(plan, c->size());
    plan_ = plan;
  }
  if (!c || c->size() == 1 || c->device_memory() || backend_->host_memory()) {
    data_parallel_ = c;
    mesh_ = MeshCommunicators(data_parallel_, plan_);
    return;
  }
#ifdef SOLO_HAVE_NCCL
  // The device's buffers need a device communicator: NCCL, bootstrapped over c, ordered with
  // the backend's stream.
  device_comm_ = comm::make_nccl_communicator(*c, backend_->device_index(), backend_->stream());
  data_parallel_ = device_comm_.get();
  backend_->set_wait_check([comm = device_comm_.get()] { comm->check_errors(); });
  mesh_ = MeshCommunicators(data_parallel_, plan_);
#else
  SOLO_FAIL("data parallelism on device '", device_.type, "' needs NCCL, which this build of ",
            "Solo lacks: install NCCL (with the CUDA toolkit) and rebuild, or use a cpu flavor");
#endif
}

ir::ValueId DeviceContext::value_of(const Tensor& t) {
  TensorImpl* impl = t.impl();
  SOLO_CHECK(impl != nullptr, "an operand is an undefined tensor");
  SOLO_CHECK(impl->device == device_, "operands are on different devices (", impl->device.type,
             " and ", device_.type, "); move one with .to() first");
  if (impl->trace) {
    SOLO_CHECK(impl->trace == trace_,
               "this tensor belongs to a graph that failed to run; recompute it");
    return impl->value;
  }
  SOLO_CHECK(impl->storage != nullptr || impl->mapped != nullptr,
             "tensor has neither data nor a pending value");
  auto it = trace_->leaf_value.find(impl);
  if (it != trace_->leaf_value.end()) return it->second;
  const ir::ValueId v = trace_->graph.input(impl->type, impl->name, impl->batch, impl->shards,
                                            impl->mapped != nullptr, impl->split);
  trace_->leaf_value[impl] = v;
  // Hold the tensor (for autograd) and its storage (the data read at the flush).
  std::shared_ptr<TensorImpl> owner(t.impl_shared());
  trace_->leaves[v] = Trace::Leaf{owner, impl->storage, impl->mapped};
  return v;
}

Tensor DeviceContext::wrap(ir::ValueId v, bool requires_grad) {
  auto impl = std::make_shared<TensorImpl>();
  impl->type = trace_->graph.type(v);
  impl->device = device_;
  impl->trace = trace_;
  impl->value = v;
  impl->requires_grad = requires_grad;
  trace_->pending.push_back(impl);
  return Tensor(impl);
}

Tensor DeviceContext::realized(std::shared_ptr<Storage> storage, const ir::TensorType& type) {
  auto impl = std::make_shared<TensorImpl>();
  impl->type = type;
  impl->device = device_;
  impl->storage = std::move(storage);
  return Tensor(impl);
}

namespace {
// A graph with optimizer updates: the step whose plan decides where the state lives.
bool is_training_step(const ir::Graph& g) {
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n)
    if (g.node(n).op == OpKind::AdamWUpdate) return true;
  return false;
}
}  // namespace

namespace {
double mib(size_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

// What a program's input (its attrs) reads of mapped file bytes holding the whole `type`: the
// tensor, or rank tp_rank's tensor-parallel block (attrs split_axis, split_ranks), and of that
// rank dp_rank's flat ZeRO block (attr "shards"). Only those bytes are read.
std::vector<unsigned char> read_block(const MappedBytes& m, const ir::TensorType& type,
                                      const Attrs& attrs, int tp_rank, int dp_rank) {
  const size_t es = dtype_size(type.dtype);
  const Shape& s = type.shape;
  // The block along `axis`: `outer` runs of `run` elements, `stride` apart.
  int64_t outer = 1, run = s.numel(), stride = 0, first = 0;
  if (attrs.has(compile::kSplitAxisAttr)) {
    const int axis = static_cast<int>(attrs.i(compile::kSplitAxisAttr));
    const int64_t ranks = attrs.i(compile::kSplitRanksAttr);
    int64_t inner = 1;
    for (int i = axis + 1; i < s.rank(); ++i) inner *= s[i];
    for (int i = 0; i < axis; ++i) outer *= s[i];
    stride = s[axis] * inner;
    run = s[axis] / ranks * inner;
    first = tp_rank * run;
  }
  std::vector<unsigned char> block(static_cast<size_t>(outer * run) * es);
  for (int64_t o = 0; o < outer; ++o)
    read_mapped(m, first + o * stride, run, type.dtype,
                block.data() + static_cast<size_t>(o * run) * es);
  const int64_t shards = attrs.i_or("shards", 1);
  if (shards == 1) return block;
  const size_t part = block.size() / static_cast<size_t>(shards);
  const auto from =
      block.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(dp_rank) * part);
  return std::vector<unsigned char>(from, from + static_cast<std::ptrdiff_t>(part));
}

// Rank 0's string, on every rank of `comm` (null: this process alone).
std::string from_rank0(comm::Communicator* comm, std::string s) {
  if (!comm || comm->size() == 1) return s;
  uint64_t n = s.size();
  comm->broadcast(&n, sizeof n, 0);
  s.resize(n);
  comm->broadcast(s.data(), n, 0);
  return s;
}
}  // namespace

planner::DeviceProfile DeviceContext::profile_for(const PlanFlavor& f, comm::Communicator* comm) {
  for (const planner::DeviceProfile& p : planner::device_catalogue())
    if (p.name == f.device_kind) return p;
  if (!backend_->host_memory()) {  // a kind the catalogue lacks ("gpu"): the device's model
    if (const planner::DeviceProfile* p =
            planner::device_profile_of_model(backend_->device_model()))
      return *p;
    return compile::assumed_cpu_profile();
  }
  if (comm != nullptr || f.threads <= 0) return cpu_profile(*backend_, comm);
  // Planning for a flavor whose ranks are not here: their measured profile if an earlier run
  // left one, else one rank's measured with their threads (its links a copy's rate), its rates
  // shared out when the ranks' threads outnumber the cores. The closed loop corrects it.
  if (std::optional<planner::DeviceProfile> p = cached_cpu_profile(f.devices, f.threads)) return *p;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(f.threads);
  planner::DeviceProfile p = cpu_profile(*backend_, nullptr);
  omp_set_num_threads(threads);
  const double cores = static_cast<double>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  const double share = std::min(1.0, cores / (std::max(1, f.devices_per_host) * f.threads));
  p.matrix_flops_16bit *= share;
  p.vector_flops_32bit *= share;
  p.memory_bandwidth *= share;
  p.memory_bandwidth_16bit *= share;
  return p;
}

void DeviceContext::plan_every_flavor(const ir::Graph& step,
                                      const std::vector<ir::ValueId>& outputs,
                                      const std::vector<ir::ValueId>& donatable,
                                      compile::SearchOptions o, uint64_t step_id) {
  std::printf("[info] Planning this step for %zu flavor(s) (solo plan --all-flavors).\n",
              all_flavors_.size());
  for (PlanFlavor f : all_flavors_) {
    o.devices = f.devices;
    o.devices_per_host = f.devices_per_host;
    o.device_memory = f.device_memory;
    o.profile = profile_for(f, nullptr);
    const compile::SearchResult r = compile::search_plans(step, outputs, donatable, o);
    const PlanCacheKey key{step_id, f, o.held_bytes};
    if (r.chosen < 0) {  // the first runnable candidate's reason stands for the rest
      std::string why = r.candidates.front().dropped;
      for (const compile::Candidate& c : r.candidates)
        if (c.not_runnable.empty() && !c.dropped.empty()) {
          why = c.plan.str() + ": " + c.dropped;
          break;
        }
      std::printf("[info]   %-12s no plan runs: %s\n", f.name.c_str(), why.c_str());
      forget_cached_plan(key);
      continue;
    }
    write_cached_plan(key, r);
    std::printf(
        "[info]   %-12s %zu candidates in %.0f ms: %s; predicted step %.3f s, peak "
        "%.2f MiB\n",
        f.name.c_str(), r.candidates.size(), r.compile_ms + r.select_ms,
        r.best().plan.str().c_str(), r.best().step_seconds, mib(r.best().peak_bytes));
  }
  std::printf("[info] Plans cached in %s/plans; stopping before the step runs.\n",
              user_cache_dir().c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(0);  // a dry run: nothing was saved or half-written, and no rank waits on us
}

void DeviceContext::choose_plan(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                                const std::vector<ir::ValueId>& donatable,
                                const std::vector<ir::ValueId>& mapped, bool async_collectives) {
  compile::SearchOptions o;
  o.devices = plan_.devices();
  o.devices_per_host = flavor_.devices_per_host;
  // A forced plan is costed as it is; running it reports what memory it lacks.
  o.device_memory = plan_forced_ ? 0 : backend_->memory_limit();
  o.held_bytes = backend_->bytes_in_use();
  o.mapped = mapped;
  o.compile.async_collectives = async_collectives;
  o.compile.half_sums = data_parallel_ && data_parallel_->device_memory();
  const uint64_t step_id = step_hash(step, outputs, donatable, mapped, async_collectives);
  if (!all_flavors_.empty()) plan_every_flavor(step, outputs, donatable, o, step_id);
  if (!profile_of_plan_) profile_of_plan_ = profile_for(flavor_, data_parallel_);
  o.profile = *profile_of_plan_;
  const bool first = data_parallel_ == nullptr || data_parallel_->rank() == 0;
  // The plan cache: rank 0 reads it, and every rank compiles what it read (or searches).
  std::optional<PlanCacheKey> plan_key;
  std::string cached;
  if (plan_forced_) {
    o.plans = {plan_};
  } else if (!flavor_.name.empty()) {
    PlanCacheKey key{step_id, flavor_, o.held_bytes};
    key.flavor.device_memory = o.device_memory;
    plan_key = key;
    cached = from_rank0(data_parallel_, first ? read_cached_plan(key) : "");
    if (!cached.empty()) o.plans = {compile::parse_plan_spec(cached, plan_cache_path(key))};
  }
  compile::SearchResult r = compile::search_plans(step, outputs, donatable, o);
  if (!cached.empty() && r.chosen < 0) {  // it no longer fits or compiles: search again
    cached.clear();
    o.plans.clear();
    r = compile::search_plans(step, outputs, donatable, o);
  }
  if (first) {
    if (plan_forced_ && r.chosen >= 0)
      std::printf("[info] Plan set by SOLO_PLAN: %s; predicted step %.3f s, peak %.2f MiB\n",
                  plan_.str().c_str(), r.best().step_seconds, mib(r.best().peak_bytes));
    else if (!cached.empty())
      std::printf(
          "[info] Plan cache hit, search skipped (%s): %s; predicted step %.3f s, peak "
          "%.2f MiB\n",
          plan_cache_path(*plan_key).c_str(), r.best().plan.str().c_str(), r.best().step_seconds,
          mib(r.best().peak_bytes));
    else
      std::fputs(r.report().c_str(), stdout);
    if (std::getenv("SOLO_PLAN_TABLE")) std::fputs(r.table().c_str(), stdout);
    std::fflush(stdout);
    if (plan_key && cached.empty() && r.chosen >= 0) {
      try {
        write_cached_plan(*plan_key, r);
      } catch (const std::exception& e) {  // a read-only cache only costs the next run a search
        std::fprintf(stderr, "[warn] the plan is not cached: %s\n", e.what());
      }
    }
  }
  SOLO_CHECK(!plan_forced_ || r.chosen >= 0, "SOLO_PLAN=", plan_.spec(),
             " cannot run this step: ", r.candidates.front().dropped);
  if (r.chosen < 0) {
    const compile::Candidate* smallest = r.smallest();
    SOLO_CHECK(smallest != nullptr, "no plan of ", plan_.dp,
               " device(s) can run this step: ", r.candidates.front().dropped);
    SOLO_FAIL("no plan of ", plan_.dp, " device(s) fits the device memory of ",
              mib(o.device_memory), " MiB: the smallest, ", smallest->plan.str(), ", needs ",
              mib(smallest->peak_bytes),
              " MiB; pick a flavor with more devices (solo switch), lower the batch size, or give "
              "the devices more memory (the inventory's device_memory_gib)");
  }
  const bool new_mesh =
      r.best().plan.tp != plan_.tp || r.best().plan.dp != plan_.dp || r.best().plan.pp != plan_.pp;
  plan_ = r.best().plan;
  if (new_mesh) mesh_ = MeshCommunicators(data_parallel_, plan_);  // every rank chose alike
  plan_searched_ = true;
  plan_cache_.clear();  // later graphs compile for the chosen plan too
  // Each stage's ranks hold their own peak.
  searched_peak_ = r.best().stage_peak_bytes.empty()
                       ? r.best().peak_bytes
                       : r.best().stage_peak_bytes.at(static_cast<size_t>(mesh_.pipeline_rank()));
  predicted_step_s_ = r.best().step_seconds;
  measured_step_s_ = 0;
  measured_steps_ = 0;
  backend_->reset_peak();
}

void DeviceContext::report_step_time(std::chrono::steady_clock::time_point started) {
  backend_->synchronize();  // queued device work counts
  measured_step_s_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  constexpr int kSteps = 3;
  if (++measured_steps_ < kSteps) return;
  const double measured = measured_step_s_ / kSteps;
  if (data_parallel_ == nullptr || data_parallel_->rank() == 0) {
    std::printf("[info] Measured step %.3f s against the predicted %.3f s (error %+.0f%%).\n",
                measured, predicted_step_s_, (predicted_step_s_ / measured - 1) * 100);
    const int ranks = data_parallel_ ? data_parallel_->size() : 1;
    if (backend_->host_memory() && profile_of_plan_ &&
        recalibrate_cpu_profile(*profile_of_plan_, ranks, measured, predicted_step_s_)) {
      std::printf(
          "[info] Over 20%% off: the CPU profile is rescaled by %.2f for the next plan "
          "(%s).\n",
          measured / predicted_step_s_, cpu_profile_path(ranks).c_str());
    }
    std::fflush(stdout);
  }
  predicted_step_s_ = 0;  // once
}

void DeviceContext::flush() {
  std::shared_ptr<Trace> trace = trace_;
  trace_ = std::make_shared<Trace>();  // new ops go to a fresh graph, even if this run fails
  std::vector<std::shared_ptr<TensorImpl>> targets;
  std::vector<ir::ValueId> outputs;
  std::unordered_set<const TensorImpl*> seen;  // a tensor rebound by assign_ is listed again
  for (const auto& weak : trace->pending) {
    std::shared_ptr<TensorImpl> impl = weak.lock();
    if (!impl || impl->trace != trace || !seen.insert(impl.get()).second) continue;
    targets.push_back(impl);
    outputs.push_back(impl->value);
  }
  if (outputs.empty()) return;
  std::unordered_map<ir::ValueId, const void*> inputs;
  // Storage only this trace still holds (a tensor rebound by assign_, like a parameter the
  // optimizer updates) is donated: an output of its size may be written into it.
  std::unordered_map<ir::ValueId, std::shared_ptr<Storage>> donated;
  std::vector<ir::ValueId> donatable;
  std::vector<ir::ValueId> mapped;  // leaves still in mapped files: read once the plan is known
  for (auto& [v, leaf] : trace->leaves) {
    if (!leaf.storage) {
      mapped.push_back(v);
      continue;
    }
    inputs[v] = leaf.storage->data();
    if (leaf.storage.use_count() == 1) {
      donated[v] = leaf.storage;
      donatable.push_back(v);
    }
  }
  std::sort(donatable.begin(), donatable.end());
  // Same graph, outputs and donations => same plan (DESIGN §3.2): steps after the first
  // reuse it.
  const uint64_t graph_hash = trace->graph.structural_hash();
  uint64_t key = graph_hash;
  for (ir::ValueId v : outputs) key = hash_mix(key, static_cast<uint64_t>(v));
  key = hash_mix(key, 0x5eedu);  // separates the donated inputs from the outputs
  for (ir::ValueId v : donatable) key = hash_mix(key, static_cast<uint64_t>(v));
  const bool async_collectives = data_parallel_ && data_parallel_->asynchronous();
  key = hash_mix(key, async_collectives ? 1 : 0);
  auto cached = plan_cache_.find(key);
  // Only while the planner still chooses or checks its prediction: a scan of the graph.
  const bool training =
      (!plan_searched_ || predicted_step_s_ > 0) && is_training_step(trace->graph);
  // Runs of a compiled training step, timed to check the planner's prediction (closed loop).
  const bool timed = predicted_step_s_ > 0 && training && cached != plan_cache_.end();
  if (cached == plan_cache_.end() && !plan_searched_ && training) {
    choose_plan(trace->graph, outputs, donatable, mapped, async_collectives);
    cached = plan_cache_.end();  // choose_plan cleared the cache: iterators are invalid
  }
  if (cached == plan_cache_.end()) {
    if (plan_cache_.size() >= kPlanCacheSize) plan_cache_.clear();
    compile::Program program =
        compile::compile(trace->graph, outputs, donatable, plan_,
                         {.async_collectives = async_collectives,
                          .half_sums = data_parallel_ && data_parallel_->device_memory(),
                          .stage = mesh_.pipeline_rank()});
    cached = plan_cache_.emplace(key, CachedPlan{std::move(program), runtime::ReplayState{}}).first;
  } else {
    ++plan_cache_hits_;
  }
  const compile::Program& program = cached->second.program;
  const runtime::MemoryPlan& plan = program.memory;
  // Inputs and donations are the step's values; the program has its own.
  std::unordered_map<ir::ValueId, const void*> bound;
  for (const auto& [v, data] : inputs) {
    const ir::ValueId local = program.local(v);
    if (local == ir::kNoValue) continue;  // another pipeline stage's
    // The whole batch is bound; this rank's program reads its block of rows.
    const int64_t row_shards =
        program.graph->producer(local).attrs.i_or(compile::kRowShardsAttr, 1);
    const size_t offset = row_shards > 1 ? static_cast<size_t>(mesh_.data_parallel_rank()) *
                                               program.graph->type(local).bytes()
                                         : 0;
    bound[local] = data ? static_cast<const unsigned char*>(data) + offset : data;
  }
  // Each rank reads what its program's input is: the whole tensor, or its block.
  std::vector<std::pair<std::shared_ptr<TensorImpl>, std::shared_ptr<Storage>>> read;
  for (ir::ValueId v : mapped) {
    const ir::ValueId local = program.local(v);
    if (local == ir::kNoValue) continue;  // another pipeline stage's: never read here
    const Trace::Leaf& leaf_of = trace->leaves.at(v);
    const std::shared_ptr<TensorImpl>& leaf = leaf_of.tensor;
    std::vector<unsigned char> host =
        read_block(*leaf_of.mapped, leaf->type, program.graph->producer(local).attrs,
                   mesh_.tensor_parallel_rank(), mesh_.data_parallel_rank());
    auto storage = std::make_shared<Storage>(*backend_, host.size());
    backend_->copy_from_host(storage->data(), host.data(), host.size());
    bound[local] = storage->data();
    read.emplace_back(leaf, std::move(storage));
  }
  std::unordered_map<ir::ValueId, std::shared_ptr<Storage>> donated_local;
  for (auto& [v, storage] : donated)
    if (program.local(v) != ir::kNoValue) donated_local[program.local(v)] = std::move(storage);
  donated.clear();
  runtime::Executor executor(*backend_, profile_.get(), mesh_.groups());
  executor.set_check_finite(check_finite_);
  const auto started = std::chrono::steady_clock::now();
  runtime::RunResult result = executor.run(*program.graph, plan, bound, donated_local,
                                           replay_ ? &cached->second.replay : nullptr);
  if (timed) report_step_time(started);
  // The planner's memory is the executor's (DESIGN §3.3); tests of every plan check it.
  SOLO_CHECK(!check_memory_ || !backend_->holds_data() || searched_peak_ == 0 ||
                 backend_->peak_bytes() == searched_peak_,
             "the device held ", backend_->peak_bytes(),
             " bytes at the peak of the step the "
             "planner chose ",
             program.plan.str(), " for, but the planner predicted ", searched_peak_,
             " (SOLO_CHECK_MEMORY=1); this is a bug of the planner");
  searched_peak_ = 0;
  SOLO_CHECK(!check_memory_ || !backend_->holds_data() || result.replayed ||
                 result.peak_bytes == plan.peak_bytes(),
             "the run of plan ", program.plan.str(), " held ", result.peak_bytes,
             " bytes at its peak, but its memory plan predicted ", plan.peak_bytes(),
             " (SOLO_CHECK_MEMORY=1); this is a bug of the memory plan");
  last_peak_bytes_ = result.peak_bytes;
  replayed_flushes_ += result.replayed ? 1 : 0;
  last_graph_hash_ = graph_hash;
  for (const auto& impl : targets) {
    const ir::ValueId local = program.local(impl->value);
    const auto staged = program.output_stage.find(impl->value);
    impl->trace.reset();
    impl->value = ir::kNoValue;
    if (local == ir::kNoValue) {  // another stage's state: this rank holds none of it
      SOLO_CHECK(staged != program.output_stage.end(), "tensor '", impl->name,
                 "' is on no pipeline stage of plan ", program.plan.str(),
                 "; this is a bug of the pipeline pass");
      const compile::Program::StagedOutput& held = staged->second;
      impl->storage = std::make_shared<Storage>(*backend_, 0);
      impl->shards = held.shards;
      impl->split = {held.axis, held.axis >= 0 ? mesh_.tensor_parallel_size() : 1, held.stage,
                     mesh_.pipeline_size()};
      continue;
    }
    const auto k = static_cast<size_t>(std::find(plan.outputs.begin(), plan.outputs.end(), local) -
                                       plan.outputs.begin());
    impl->storage = result.outputs[k];
    impl->shards = program.shards_of(local);
    const auto axis = program.output_axes.find(local);
    impl->split = axis == program.output_axes.end()
                      ? ir::HeldSplit{}
                      : ir::HeldSplit{axis->second, mesh_.tensor_parallel_size()};
    if (staged != program.output_stage.end())  // this stage's state
      impl->split.stage = staged->second.stage, impl->split.stages = mesh_.pipeline_size();
  }
  // A mapped tensor the step did not rebind keeps what this rank read (so later steps do
  // not read the file again).
  for (auto& [leaf, storage] : read)
    if (leaf->mapped && !leaf->trace && !leaf->storage) {
      const Attrs& attrs =
          program.graph->producer(program.local(trace->leaf_value.at(leaf.get()))).attrs;
      leaf->shards = attrs.i_or("shards", 1);
      if (attrs.has(compile::kSplitAxisAttr))
        leaf->split = {static_cast<int>(attrs.i(compile::kSplitAxisAttr)),
                       attrs.i(compile::kSplitRanksAttr)};
      leaf->storage = std::move(storage);
      leaf->mapped.reset();
    }
  // Only this rank's graph is kept: the trace's leaves hold storage that must be free to donate.
  last_graph_ = program.graph;
}

std::shared_ptr<Storage> DeviceContext::gather_blocks(const TensorImpl& t) {
  const int dp = mesh_.data_parallel() ? mesh_.data_parallel()->size() : 1;
  const int64_t tp = t.split.axis >= 0 ? t.split.ranks : 1;
  const int64_t pp = t.split.stage >= 0 ? t.split.stages : 1;
  SOLO_CHECK((t.shards == 1 || dp == t.shards) &&
                 tp == (t.split.axis >= 0 ? mesh_.tensor_parallel_size() : 1) &&
                 pp == (t.split.stage >= 0 ? mesh_.pipeline_size() : 1),
             "tensor '", t.name, "' is held as blocks over ", t.shards * tp * pp,
             " ranks, but device ", device_.type, " now runs on ",
             dp * mesh_.tensor_parallel_size() * mesh_.pipeline_size(),
             "; read it while the session that trained it is open");
  std::shared_ptr<Storage> whole;
  if (t.split.stage < 0 || t.split.stage == mesh_.pipeline_rank()) {
    // The tensor-parallel block it holds (the whole tensor without one), then the whole.
    Shape block_shape = t.type.shape;
    if (t.split.axis >= 0) block_shape[t.split.axis] /= tp;
    ir::Graph g;
    const ir::ValueId held =
        g.input({Shape{block_shape.numel() / t.shards}, t.type.dtype}, t.name, false, t.shards);
    ir::ValueId v = t.shards > 1 ? ir::all_gather(g, held, t.shards) : held;
    v = ir::reshape(g, v, block_shape);
    if (t.split.axis >= 0) v = ir::all_gather(g, v, tp, t.split.axis, /*group=*/1);
    runtime::Executor executor(*backend_, nullptr, mesh_.groups());
    whole = executor.run(g, {v}, {{held, t.storage->data()}}).outputs[0];
  } else {
    whole = std::make_shared<Storage>(*backend_, t.type.bytes());
  }
  // A stage's state reaches the other stages from the rank at its place on that stage.
  if (t.split.stage >= 0) mesh_.pipeline()->broadcast(whole->data(), t.type.bytes(), t.split.stage);
  return whole;
}

}  // namespace solo
