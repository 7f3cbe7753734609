// Runs a graph on one backend: topological order, intermediates in one arena laid out by
// the static memory plan, requested outputs in storage of their own.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/ir/graph.h"
#include "solo/runtime/memory_plan.h"
#include "solo/runtime/replay.h"

namespace solo::runtime {

struct RunResult {
  std::vector<std::shared_ptr<Storage>> outputs;  // one per plan.outputs entry
  size_t peak_bytes = 0;  // most bytes this run held allocated at once (arena + outputs)
  bool replayed = false;  // served by replaying a recording
};

// Wall time per op kind over runs; the executor synchronizes around each op while profiling.
struct OpProfile {
  std::array<double, kNumOps> seconds{};
  std::array<int64_t, kNumOps> calls{};
  std::string report() const;  // one line per op kind, slowest first
};

class Executor {
 public:
  // `comm` runs the collective ops of group 0 (the data-parallel gradient buckets); without
  // one they act on a single rank.
  explicit Executor(Backend& backend, OpProfile* profile = nullptr,
                    comm::Communicator* comm = nullptr)
      : Executor(backend, profile, std::vector<comm::Communicator*>{comm}) {}
  // groups[k] runs the collectives whose attr "group" is k (the axes of a device mesh).
  Executor(Backend& backend, OpProfile* profile, std::vector<comm::Communicator*> groups)
      : backend_(backend),
        profile_(profile),
        groups_(std::move(groups)),
        comm_(groups_.empty() ? nullptr : groups_[0]) {}

  // `inputs` maps the value of each Input node in the plan's schedule to its data on this
  // backend; a missing one is an error naming the input. `donated` holds the storage of the
  // inputs the plan was made to donate: their Donated outputs are returned in it. With
  // `replay` (the caller's state for this plan) a backend that can record runs the plan's
  // second and later runs as a replay of one recording (see replay.h); results are the same.
  RunResult run(const ir::Graph& g, const MemoryPlan& plan,
                const std::unordered_map<ir::ValueId, const void*>& inputs,
                const std::unordered_map<ir::ValueId, std::shared_ptr<Storage>>& donated = {},
                ReplayState* replay = nullptr);
  RunResult run(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                const std::unordered_map<ir::ValueId, const void*>& inputs);

  Backend& backend() const { return backend_; }
  // Checks every float output of every kernel and stops at the first NaN or infinity,
  // naming the node that made it (SOLO_CHECK_FINITE=1; slow: each output is read back).
  void set_check_finite(bool on) { check_finite_ = on; }

 private:
  using Donated = std::unordered_map<ir::ValueId, std::shared_ptr<Storage>>;
  RunResult run_eagerly(const ir::Graph& g, const MemoryPlan& plan,
                        const std::vector<const void*>& bound, const Donated& donated);
  // Replays the plan's recording (recording it first when an input it reads in place moved);
  // false when the plan cannot be replayed and must run eagerly.
  bool replayed(const ir::Graph& g, const MemoryPlan& plan, const std::vector<const void*>& bound,
                const Donated& donated, ReplayState& state, RunResult& result);
  bool record(const ir::Graph& g, const MemoryPlan& plan, const std::vector<const void*>& bound,
              ReplayState& state);
  // Queues the schedule: Input nodes read `source`, every other value lives at `data`.
  void launch(const ir::Graph& g, const MemoryPlan& plan, const std::vector<const void*>& source,
              std::vector<void*>& data);
  // Runs a collective node through its group's communicator; start: an asynchronous start
  // of an AllReduce or AllGather (the plan waits for it later). Returns the communicator's
  // ticket for the wait (0: done already).
  size_t run_collective(const ir::Graph& g, const ir::Node& node, const std::vector<void*>& data,
                        bool start);
  void run_point_to_point(const ir::Graph& g, const ir::Node& node, const std::vector<void*>& data,
                          comm::Communicator* comm, int64_t group);
  // Host buffers need a host communicator, device buffers a device one.
  void check_buffers(const comm::Communicator& comm, OpKind op) const;
  // The communicator of a group, null when the executor has none for it.
  comm::Communicator* group_of(int64_t group) const;
  // The node's attrs with "rank" set to this rank's index in its group (OpInfo::group_rank).
  Attrs with_group_rank(const ir::Node& node) const;
  Backend& backend_;
  OpProfile* profile_;
  std::vector<comm::Communicator*> groups_;
  comm::Communicator* comm_;  // group 0: the one whose AllReduces may overlap compute
  bool check_finite_ = false;
  void check_finite(const ir::Graph& g, const ir::Node& node, const std::vector<void*>& data) const;
};

}  // namespace solo::runtime
