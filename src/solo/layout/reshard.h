// Changing a tensor's layout on a mesh: small rules, one per transition of one mesh axis,
// each registered as (applies, apply, bytes sent). apply appends to a rank's graph the nodes
// that turn its local block under one layout into its local block under the other:
//   P -> R     all-reduce (sum)          S(d) -> R  all-gather along d
//   P -> S(d)  reduce-scatter along d    R -> S(d)  local slice of this device's block
//   R -> P     this device's term: the value on coordinate 0, zeros elsewhere
// Mesh axis k's collectives run on communicator group k (the executor's k-th communicator).
#pragma once
#include <cstdint>
#include <vector>

#include "solo/ir/graph.h"
#include "solo/layout/layout.h"

namespace solo::layout {

// Where the transition happens: mesh axis `axis`, on the device at `coordinate` along it.
struct ReshardSite {
  const Mesh& mesh;
  int axis;
  int64_t coordinate;
  int64_t size() const { return mesh.axis(axis).size; }
};

struct ReshardRule {
  const char* name;
  bool (*applies)(const AxisLayout& from, const AxisLayout& to);
  ir::ValueId (*apply)(ir::Graph& g, ir::ValueId local, const AxisLayout& from,
                       const AxisLayout& to, const ReshardSite& site);
  // Bytes one device sends for a local block of `bytes` bytes (ring algorithms), for costing.
  double (*bytes_sent)(double bytes, int64_t n);
};

// The registered rules, in the order they are tried.
const std::vector<ReshardRule>& reshard_rules();

// One step of a reshard: which rule on which mesh axis, and what it sends.
struct ReshardStep {
  const ReshardRule* rule;
  int axis;
  double bytes_sent;
};

// The steps from `from` to `to` for a tensor of `global` shape and dtype size `elem_bytes`,
// without building anything (the planner costs candidates with it). Throws naming the axis
// and the two layouts when no rule applies (e.g. S(0) -> S(1), an all-to-all).
std::vector<ReshardStep> reshard_steps(const Shape& global, size_t elem_bytes, const Layout& from,
                                       const Layout& to, const Mesh& mesh);

// Appends to g the nodes turning `local` (this device's block of a tensor of `global` shape
// under `from`) into its block under `to`; `coordinate` is the device's mesh coordinate.
ir::ValueId reshard(ir::Graph& g, ir::ValueId local, const Shape& global, const Layout& from,
                    const Layout& to, const Mesh& mesh, const std::vector<int64_t>& coordinate);

}  // namespace solo::layout
