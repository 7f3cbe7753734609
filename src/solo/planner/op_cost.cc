#include "solo/planner/op_cost.h"

#include <algorithm>
#include <cstdio>

#include "solo/core/error.h"
#include "solo/core/op_info.h"
#include "solo/ir/ops.h"

namespace solo::planner {

namespace {

double bytes_of(const ir::Graph& g, const std::vector<ir::ValueId>& values) {
  double b = 0;
  for (ir::ValueId v : values) b += static_cast<double>(g.type(v).bytes());
  return b;
}

int64_t group_size(const ir::Node& node, const std::vector<int64_t>& group_sizes) {
  if (node.attrs.has("ranks")) return node.attrs.i("ranks");
  const auto group = static_cast<size_t>(node.attrs.i_or("group", 0));
  return group < group_sizes.size() ? group_sizes[group] : 1;
}

// Q K^T and P V (forward), and the five products of the backward, over B Hq T S D; causal
// attention skips the upper half. A sliding window W < T leaves W T - W (W - 1) / 2 of the
// T S (query, key) pairs (min(t + 1, W) keys for query t).
double attention_flops(const ir::Graph& g, const ir::Node& node, double products) {
  const Shape &q = g.shape(node.inputs[0]), &k = g.shape(node.inputs[1]);
  const double full = 2.0 * products * static_cast<double>(q[0]) * static_cast<double>(q[1]) *
                      static_cast<double>(k[1]) * static_cast<double>(q[2]) *
                      static_cast<double>(q[3]);
  if (node.attrs.i("causal") == 0) return full;
  const int64_t w = node.attrs.i_or("window", 0);
  if (w <= 0 || w >= q[1]) return full / 2;
  const double t = static_cast<double>(q[1]), wd = static_cast<double>(w);
  return full * (wd * t - wd * (wd - 1) / 2) / (t * static_cast<double>(k[1]));
}

}  // namespace

OpCost op_cost(const ir::Graph& g, const ir::Node& node, const std::vector<int64_t>& group_sizes) {
  OpCost c;
  c.op = node.op;
  c.bytes = bytes_of(g, node.inputs) + bytes_of(g, node.outputs);
  if (node.op == OpKind::LocalShard) {  // a copy of this rank's block: no link
    c.bytes = 2 * bytes_of(g, node.outputs);
    return c;
  }
  if (!node.inputs.empty()) c.compute = g.dtype(node.inputs[0]);
  switch (op_info(node.op).cost) {
    case OpCostClass::None:
      return OpCost{0, 0, DType::F32, 0, false, false, node.op};
    case OpCostClass::MatMul: {
      const Shape& a = g.shape(node.inputs[0]);
      const int64_t k = node.attrs.i("trans_a") != 0 ? a[a.rank() - 2] : a[a.rank() - 1];
      c.flops =
          2.0 * static_cast<double>(g.shape(node.outputs[0]).numel()) * static_cast<double>(k);
      return c;
    }
    case OpCostClass::Attention:
      // Forward: two products; backward: five (S recomputed, dV, dP, dQ, dK).
      c.flops = attention_flops(g, node, node.op == OpKind::AttentionBackward ? 5 : 2);
      return c;
    case OpCostClass::Collective:
      c.communication = true;
      if (node.op == OpKind::Send || node.op == OpKind::Recv) {
        c.bytes_sent = node.op == OpKind::Send ? bytes_of(g, node.inputs) : 0;
        c.bytes = bytes_of(g, node.op == OpKind::Send ? node.inputs : node.outputs);
      } else {
        const auto n = static_cast<double>(group_size(node, group_sizes));
        const double in = bytes_of(g, node.inputs);
        c.bytes_sent = node.op == OpKind::AllReduce   ? 2 * in * (n - 1) / n
                       : node.op == OpKind::AllGather ? in * (n - 1)
                                                      : in * (n - 1) / n;  // ReduceScatter
      }
      return c;
    case OpCostClass::MemoryBound:
      break;
  }
  c.flops = static_cast<double>(g.shape(node.outputs[0]).numel());  // elementwise-like
  return c;
}

double node_seconds(const OpCost& c, const DeviceProfile& d, bool inter_host) {
  if (!c.kernel) return 0;
  if (c.communication) {
    double link = inter_host ? d.inter_host_link : d.intra_host_link;
    if (!inter_host && c.op == OpKind::ReduceScatter && d.reduce_scatter_link > 0)
      link = d.reduce_scatter_link;
    if (!inter_host && c.op == OpKind::AllGather && d.all_gather_link > 0) link = d.all_gather_link;
    return d.collective_latency_s + c.bytes_sent / (link * d.link_efficiency);
  }
  const double compute = c.flops / (d.peak_flops(c.compute) * d.matrix_efficiency);
  const double memory = c.bytes / (d.bandwidth(c.compute) * d.memory_efficiency);
  return std::max(compute, memory) + d.kernel_launch_s;
}

Timeline::Timeline(const ir::Graph& g, bool overlap)
    : overlap_(overlap), ready_(static_cast<size_t>(g.num_values()), 0.0) {}

double Timeline::add(const ir::Node& node, const OpCost& c, double seconds) {
  const double before = end();
  double inputs = 0;
  for (ir::ValueId v : node.inputs) inputs = std::max(inputs, ready_[static_cast<size_t>(v)]);
  double done;
  if (c.communication && overlap_ && op_info(node.op).async_start &&
      node.attrs.i_or(ir::kOverlapAttr, 0) != 0) {
    done = std::max(communication_, inputs) + seconds;
    communication_ = done;
  } else if (c.communication) {  // blocking: both streams wait for it
    done = std::max({compute_, communication_, inputs}) + seconds;
    compute_ = communication_ = done;
  } else {
    done = std::max(compute_, inputs) + seconds;
    compute_ = done;
  }
  for (ir::ValueId v : node.outputs) ready_[static_cast<size_t>(v)] = done;
  return end() - before;
}

StepEstimate estimate_step(const ir::Graph& g, const std::vector<ir::NodeId>& schedule,
                           const DeviceProfile& device, const std::vector<int64_t>& group_sizes,
                           const std::vector<bool>& crosses_hosts, bool overlap) {
  StepEstimate e;
  Timeline timeline(g, overlap);
  for (ir::NodeId id : schedule) {
    const ir::Node& node = g.node(id);
    const OpCost c = op_cost(g, node, group_sizes);
    if (!c.kernel) continue;
    const auto group = static_cast<size_t>(node.attrs.i_or("group", 0));
    const double s = node_seconds(
        c, device, c.communication && group < crosses_hosts.size() && crosses_hosts[group]);
    timeline.add(node, c, s);
    e.flops += c.flops;
    ++e.kernels;
    if (c.communication)
      e.communication_s += s;
    else if (c.flops / device.peak_flops(c.compute) >= c.bytes / device.bandwidth(c.compute))
      e.compute_bound_s += s;
    else
      e.memory_bound_s += s;
  }
  e.seconds = timeline.end();
  e.hidden_s = e.compute_bound_s + e.memory_bound_s + e.communication_s - e.seconds;
  return e;
}

std::string StepEstimate::str() const {
  char line[200];
  std::snprintf(line, sizeof line,
                "%.1f ms: compute-bound %.1f ms, memory-bound %.1f ms, communication %.1f ms, "
                "%lld kernels",
                seconds * 1e3, compute_bound_s * 1e3, memory_bound_s * 1e3, communication_s * 1e3,
                static_cast<long long>(kernels));
  return line;
}

}  // namespace solo::planner
