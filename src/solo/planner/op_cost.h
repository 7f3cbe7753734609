// The work of one graph node, from shapes alone: FLOPs for the ops that do arithmetic in
// bulk (GEMMs, attention), bytes read and written for every kernel, bytes sent for
// collectives. A roofline over a device profile turns it into time.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "solo/ir/graph.h"
#include "solo/planner/device_catalogue.h"

namespace solo::planner {

struct OpCost {
  double flops = 0;            // multiply-adds count 2
  double bytes = 0;            // device memory read and written by the kernel
  DType compute = DType::F32;  // the dtype its arithmetic runs in
  double bytes_sent = 0;       // collectives and sends: bytes this device puts on a link
  bool kernel = true;          // false for graph inputs and views (no launch)
  bool communication = false;
  OpKind op = OpKind::Input;  // the node's op (a collective's kind picks its link rate)
};

// `group_sizes[k]`: ranks in communicator group k (AllReduce carries no size of its own).
OpCost op_cost(const ir::Graph& g, const ir::Node& node, const std::vector<int64_t>& group_sizes);

// Roofline time of one node on `device`: the longer of compute and memory time (or latency
// plus link time for communication) plus a launch. `inter_host`: collectives cross hosts.
double node_seconds(const OpCost& cost, const DeviceProfile& device, bool inter_host = false);

struct StepEstimate {
  double seconds = 0;   // the step's end on the Timeline below
  double hidden_s = 0;  // communication that ran under compute (overlap)
  double flops = 0;
  double compute_bound_s = 0, memory_bound_s = 0, communication_s = 0;
  int64_t kernels = 0;
  std::string str() const;  // one line
};

// A step's time as its executor runs it: the compute stream runs the nodes in schedule order;
// with `overlap` (an asynchronous communicator, NCCL), a collective marked to overlap
// (ir::kOverlapAttr: bucketed gradient all-reduces, prefetched ZeRO-3 gathers) runs on a
// communication stream of its own, one collective at a time, from when its inputs are ready,
// and its readers wait for it. Any other collective holds both streams.
class Timeline {
 public:
  Timeline(const ir::Graph& g, bool overlap);
  // Runs `node`, taking `seconds`; returns how much later the step now ends.
  double add(const ir::Node& node, const OpCost& c, double seconds);
  double end() const { return std::max(compute_, communication_); }

 private:
  bool overlap_;
  double compute_ = 0, communication_ = 0;  // when each stream is next free
  std::vector<double> ready_;               // per value: when it is computed
};

// The nodes of `schedule` (a memory plan's schedule) on `device`.
// `crosses_hosts[k]`: communicator group k spans hosts (its collectives use the inter-host
// link). `overlap`: the executor's communicator is asynchronous (Timeline).
StepEstimate estimate_step(const ir::Graph& g, const std::vector<ir::NodeId>& schedule,
                           const DeviceProfile& device,
                           const std::vector<int64_t>& group_sizes = {1},
                           const std::vector<bool>& crosses_hosts = {}, bool overlap = false);

}  // namespace solo::planner
