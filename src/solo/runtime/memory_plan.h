// Static memory plan of one graph run: which nodes run, and where every intermediate value
// lives in one arena. Buffers are reused once their value is dead (liveness over the
// schedule, greedy-by-size placement). The executor allocates exactly this plan, so the
// planner's memory prediction is the executor's allocation.
#pragma once
#include <cstdint>
#include <vector>

#include "solo/ir/graph.h"

namespace solo::runtime {

enum class Placement : uint8_t {
  None,     // not computed in this run
  Input,    // bound by the caller (an Input node)
  Arena,    // intermediate: lives at offset[v] in the arena
  Output,   // requested output: its own storage, returned to the caller
  View,     // a reshape: shares the bytes of root[v]
  Donated,  // requested output written into the buffer of the dead input donor[v]
};

struct MemoryPlan {
  std::vector<ir::NodeId> schedule;        // nodes to run, in topological order
  std::vector<Placement> placement;        // per value
  std::vector<int64_t> offset;             // per value, for Arena values
  std::vector<ir::ValueId> root;           // per value: whose bytes it uses (itself unless a View)
  std::vector<ir::ValueId> donor;          // per value: the input a Donated output reuses
  std::vector<int> first_use, last_use;    // per value: schedule steps of definition and last read
  std::vector<ir::ValueId> outputs;        // requested outputs, deduplicated, in request order
  std::vector<int64_t> collective_groups;  // communicator groups the schedule's collectives use
  // With asynchronous collectives: before step t runs, the executor orders the work after
  // the collectives started at steps wait_before[t] (Communicator::wait_for).
  bool async_collectives = false;
  std::vector<std::vector<int>> wait_before;
  size_t arena_bytes = 0;
  size_t output_bytes = 0;     // outputs in storage of their own (donated ones excluded)
  size_t live_peak_bytes = 0;  // lower bound: most bytes simultaneously live in the arena

  // Bytes the executor allocates for one run: the arena plus the outputs.
  size_t peak_bytes() const { return arena_bytes + output_bytes; }
};

// The collectives a plan with `async_collectives` starts and waits for later: those whose op
// may start asynchronously (OpInfo::async_start: AllReduce, AllGather) and that the pass
// which made them marked to overlap (ir::kOverlapAttr: the data-parallel gradient buckets,
// ZeRO-3's prefetched gathers). Other collectives finish in order.
bool starts_asynchronously(const ir::Node& node);

constexpr size_t kArenaAlignment = 64;
// bytes rounded up to kArenaAlignment: the room a buffer takes in an arena.
size_t align_up(size_t bytes);

// The schedule is the nodes the requested outputs depend on, plus the side-effect nodes
// (OpInfo::side_effect: sends) whose inputs those nodes already compute.
// `donatable`: inputs whose buffers the caller gives up (nothing reads them after the run). A
// requested output of the same size is written into one once the input is dead, or by the
// node that reads it last when that op updates it in place (OpInfo::inplace): no new
// storage, and the output keeps the input's address from step to step.
// `async_collectives`: the communicator runs the started collectives while later nodes
// compute (overlap). Each is waited for before its first consumer (a gradient bucket also
// before the next bucket starts), and its buffers stay live until then (the collective still
// reads and writes them).
MemoryPlan plan_memory(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                       const std::vector<ir::ValueId>& donatable = {},
                       bool async_collectives = false);

// Throws if two arena values that are live at the same step overlap (used by tests).
void check_memory_plan(const ir::Graph& g, const MemoryPlan& plan);

}  // namespace solo::runtime
