// R -> P: the value as one term of a sum over the axis: coordinate 0 keeps it, the others
// hold zeros (a bias added once to a row-parallel output, for instance).
#include "solo/ir/ops.h"
#include "solo/layout/reshard_rules.h"

namespace solo::layout {

ReshardRule replicate_to_partial() {
  return {"keep-on-first",
          [](const AxisLayout& from, const AxisLayout& to) {
            return from.kind == AxisLayout::Replicate && to.kind == AxisLayout::Partial;
          },
          [](ir::Graph& g, ir::ValueId x, const AxisLayout&, const AxisLayout&,
             const ReshardSite& site) {
            return ir::mul_scalar(g, x, site.coordinate == 0 ? 1.0 : 0.0);
          },
          [](double, int64_t) { return 0.0; }};
}

}  // namespace solo::layout
