// Internals of the lazy tensor: the per-device trace (pending graph) and its context.
#pragma once
#include <chrono>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "solo/backend/backend.h"
#include "solo/compile/program.h"
#include "solo/planner/device_catalogue.h"
#include "solo/runtime/executor.h"
#include "solo/tensor/mesh_communicators.h"
#include "solo/tensor/tensor.h"

namespace solo {

struct Trace;

// Elements [first, first + count) of mapped bytes, converted to `to`, into host memory.
void read_mapped(const MappedBytes& m, int64_t first, int64_t count, DType to, void* dst);

struct TensorImpl {
  ir::TensorType type;
  Device device;
  std::string name;
  std::shared_ptr<Storage> storage;  // set once realized
  std::shared_ptr<Trace> trace;      // set while pending ...
  ir::ValueId value = ir::kNoValue;  // ... as this value of trace->graph
  bool requires_grad = false;
  bool batch = false;  // rows of the training batch (Tensor::as_batch)
  // > 1: `storage` holds this rank's flat block of the tensor over that many data-parallel
  // ranks (a ZeRO plan's output, compile/zero.h); reading it gathers the blocks.
  int64_t shards = 1;
  // axis >= 0: `storage` holds this rank's block along that axis over the tensor-parallel
  // ranks (a tensor-parallel plan's output, compile/tensor_parallel.h); with shards > 1, the
  // ZeRO blocks are of that block.
  ir::HeldSplit split;
  // Set while the values are still mapped file bytes (Tensor::from_mapped): no storage yet.
  std::shared_ptr<const MappedBytes> mapped;
  Tensor grad;
};

// The graph being built on one device since its last flush.
struct Trace {
  ir::Graph graph;
  struct Leaf {
    std::shared_ptr<TensorImpl> tensor;         // the realized tensor bound to the Input node
    std::shared_ptr<Storage> storage;           // its data at import time, or
    std::shared_ptr<const MappedBytes> mapped;  // its mapped bytes, read once the plan is known
  };
  std::unordered_map<const TensorImpl*, ir::ValueId> leaf_value;
  std::unordered_map<ir::ValueId, Leaf> leaves;
  std::vector<std::weak_ptr<TensorImpl>> pending;
  // Casts made by autocast, by (value << 8 | dtype), so each value is cast once.
  std::unordered_map<uint64_t, ir::ValueId> autocast_casts;
};

class DeviceContext {
 public:
  explicit DeviceContext(const Device& d);
  ~DeviceContext();
  Backend& backend() const { return *backend_; }
  const Device& device() const { return device_; }
  Trace& trace() { return *trace_; }

  // The graph value of a tensor on this device: pending tensors give theirs, realized ones
  // are imported once per trace as Input nodes.
  ir::ValueId value_of(const Tensor& t);
  // A new pending tensor for value v of the current trace.
  Tensor wrap(ir::ValueId v, bool requires_grad);
  // A new realized tensor holding `storage`.
  Tensor realized(std::shared_ptr<Storage> storage, const ir::TensorType& type);
  void flush();
  // The whole tensor of one held as blocks (TensorImpl::shards, TensorImpl::split): all-gathers
  // over the data- and tensor-parallel groups, so every rank must ask for it together (as SPMD
  // programs do).
  std::shared_ptr<Storage> gather_blocks(const TensorImpl& t);
  // The data-parallel group the compiled programs run on (null: one rank); it must outlive
  // its use. On a device backend (not host_memory()), a host communicator of several ranks
  // only bootstraps an NCCL communicator that this context owns and uses instead. The plan
  // is data parallelism over its ranks, or SOLO_PLAN's when set (refused, with the reason,
  // when this build cannot run it on that many devices).
  void set_data_parallel(comm::Communicator* c);
  const compile::PlanSpec& plan() const { return plan_; }
  void set_plan_flavor(PlanFlavor f) { flavor_ = std::move(f); }
  void plan_all_flavors(std::vector<PlanFlavor> f) { all_flavors_ = std::move(f); }
  comm::Communicator* data_parallel() const { return data_parallel_; }
  size_t last_peak_bytes() const { return last_peak_bytes_; }
  uint64_t last_graph_hash() const { return last_graph_hash_; }
  std::shared_ptr<const ir::Graph> last_graph() const { return last_graph_; }
  int64_t plan_cache_hits() const { return plan_cache_hits_; }
  int64_t replayed_flushes() const { return replayed_flushes_; }

 private:
  Device device_;
  // Adds the run since `started` to the measured step time; after a few runs prints it
  // against the planner's prediction, once.
  void report_step_time(std::chrono::steady_clock::time_point started);
  // The planner's choice for a step (compile::search_plans): sets plan_, prints the search.
  void choose_plan(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                   const std::vector<ir::ValueId>& donatable,
                   const std::vector<ir::ValueId>& mapped, bool async_collectives);

  std::unique_ptr<Backend> backend_;
  std::shared_ptr<Trace> trace_;
  size_t last_peak_bytes_ = 0;
  std::shared_ptr<const ir::Graph> last_graph_;  // the graph of the last flush (for costing)
  uint64_t last_graph_hash_ = 0;
  comm::Communicator* data_parallel_ = nullptr;  // the job's ranks (or their NCCL communicator)
  MeshCommunicators mesh_;  // plan_'s mesh over data_parallel_: one communicator per axis
  compile::PlanSpec plan_;
  // No SOLO_PLAN: the planner chooses plan_ at the first training step (a graph with optimizer
  // updates) and keeps it; until then steps run plain data parallelism.
  bool plan_searched_ = true;
  // SOLO_PLAN's plan: the planner costs it alone at the first training step (no dropping).
  bool plan_forced_ = false;
  // The profile the plan was costed on; measured (cpu_profile.h) for host devices.
  std::optional<planner::DeviceProfile> profile_of_plan_;
  PlanFlavor flavor_;                    // what the plans are for (no name: no plan cache)
  std::vector<PlanFlavor> all_flavors_;  // `solo plan --all-flavors`: plan these, then exit
  // The profile a search for `f` costs on: the catalogue's for an accelerator kind it knows,
  // else the host's measured one (for `ranks`; null comm: this process alone).
  planner::DeviceProfile profile_for(const PlanFlavor& f, comm::Communicator* comm);
  // `solo plan --all-flavors`: searches the step for every flavor and caches each choice.
  void plan_every_flavor(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                         const std::vector<ir::ValueId>& donatable, compile::SearchOptions o,
                         uint64_t step_id);
  // The chosen plan's predicted device peak of that step, for SOLO_CHECK_MEMORY (0: none).
  size_t searched_peak_ = 0;
  // Its predicted step time, compared once with the measured time of the next training runs.
  double predicted_step_s_ = 0, measured_step_s_ = 0;
  int measured_steps_ = 0;
  std::unique_ptr<comm::Communicator> device_comm_;  // the NCCL one, on a device backend
  // Memory plans by (graph hash, requested outputs); a program has few distinct graphs.
  static constexpr size_t kPlanCacheSize = 16;
  // With each plan, what replaying its recorded work needs (backends that record: cuda).
  struct CachedPlan {
    compile::Program program;
    runtime::ReplayState replay;
  };
  std::unordered_map<uint64_t, CachedPlan> plan_cache_;
  bool replay_ = true;         // SOLO_CUDA_GRAPHS=0 turns replays off
  bool check_memory_ = false;  // SOLO_CHECK_MEMORY=1: every run's peak must be the plan's
  bool check_finite_ = false;  // SOLO_CHECK_FINITE=1: stop at the first op making a NaN/inf
  int64_t plan_cache_hits_ = 0;
  int64_t replayed_flushes_ = 0;
  std::unique_ptr<runtime::OpProfile> profile_;  // with SOLO_PROFILE=1: printed at exit
};

// The context of a device, created on first use (one per device per process).
DeviceContext& device_context(const Device& d);

}  // namespace solo
