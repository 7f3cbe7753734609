// The work of one graph node, from shapes alone: FLOPs for the ops that do arithmetic in
// bulk (GEMMs, attention), bytes read and written for every kernel, bytes sent for
// collectives. A roofline over a device profile turns it into time.
#pragma once
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
};

// `group_sizes[k]`: ranks in communicator group k (AllReduce carries no size of its own).
OpCost op_cost(const ir::Graph& g, const ir::Node& node, const std::vector<int64_t>& group_sizes);

// Roofline time of one node on `device`: the longer of compute and memory time (or latency
// plus link time for communication) plus a launch. `inter_host`: collectives cross hosts.
double node_seconds(const OpCost& cost, const DeviceProfile& device, bool inter_host = false);

struct StepEstimate {
  double seconds = 0;  // sum of the nodes' times (no overlap assumed)
  double flops = 0;
  double compute_bound_s = 0, memory_bound_s = 0, communication_s = 0;
  int64_t kernels = 0;
  std::string str() const;  // one line
};

// The nodes of `schedule` (a memory plan's schedule) on `device`.
// `crosses_hosts[k]`: communicator group k spans hosts (its collectives use the inter-host
// link).
StepEstimate estimate_step(const ir::Graph& g, const std::vector<ir::NodeId>& schedule,
                           const DeviceProfile& device,
                           const std::vector<int64_t>& group_sizes = {1},
                           const std::vector<bool>& crosses_hosts = {});

}  // namespace solo::planner
