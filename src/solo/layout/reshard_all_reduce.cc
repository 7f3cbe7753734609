// P -> R: the terms summed on every device.
#include "solo/ir/ops.h"
#include "solo/layout/reshard_rules.h"

namespace solo::layout {

ReshardRule partial_to_replicate() {
  return {
      "all-reduce",
      [](const AxisLayout& from, const AxisLayout& to) {
        return from.kind == AxisLayout::Partial && to.kind == AxisLayout::Replicate;
      },
      [](ir::Graph& g, ir::ValueId x, const AxisLayout&, const AxisLayout&,
         const ReshardSite& site) { return ir::all_reduce(g, x, /*average=*/false, site.axis); },
      [](double bytes, int64_t n) { return 2.0 * bytes * static_cast<double>(n - 1) / n; }};
}

}  // namespace solo::layout
