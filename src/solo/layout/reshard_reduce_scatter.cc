// P -> S(d): the terms summed, each device keeping its block along d.
#include "solo/ir/ops.h"
#include "solo/layout/reshard_rules.h"

namespace solo::layout {

ReshardRule partial_to_split() {
  return {"reduce-scatter",
          [](const AxisLayout& from, const AxisLayout& to) {
            return from.kind == AxisLayout::Partial && to.kind == AxisLayout::Split;
          },
          [](ir::Graph& g, ir::ValueId x, const AxisLayout&, const AxisLayout& to,
             const ReshardSite& site) {
            return ir::reduce_scatter(g, x, site.size(), to.dim, site.axis);
          },
          [](double bytes, int64_t n) { return bytes * static_cast<double>(n - 1) / n; }};
}

}  // namespace solo::layout
