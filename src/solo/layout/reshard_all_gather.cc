// S(d) -> R: every device's block, concatenated along d in coordinate order.
#include "solo/ir/ops.h"
#include "solo/layout/reshard_rules.h"

namespace solo::layout {

ReshardRule split_to_replicate() {
  return {"all-gather",
          [](const AxisLayout& from, const AxisLayout& to) {
            return from.kind == AxisLayout::Split && to.kind == AxisLayout::Replicate;
          },
          [](ir::Graph& g, ir::ValueId x, const AxisLayout& from, const AxisLayout&,
             const ReshardSite& site) {
            return ir::all_gather(g, x, site.size(), from.dim, site.axis);
          },
          // Sends its block to n - 1 devices' worth of ring steps: (n - 1) blocks.
          [](double bytes, int64_t n) { return bytes * static_cast<double>(n - 1); }};
}

}  // namespace solo::layout
