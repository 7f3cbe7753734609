// R -> S(d): no communication; each device keeps its own block along d.
#include "solo/core/error.h"
#include "solo/ir/ops.h"
#include "solo/layout/reshard_rules.h"

namespace solo::layout {

ReshardRule replicate_to_split() {
  return {"slice",
          [](const AxisLayout& from, const AxisLayout& to) {
            return from.kind == AxisLayout::Replicate && to.kind == AxisLayout::Split;
          },
          [](ir::Graph& g, ir::ValueId x, const AxisLayout&, const AxisLayout& to,
             const ReshardSite& site) {
            const int64_t extent = g.shape(x)[static_cast<int>(to.dim)], n = site.size();
            SOLO_CHECK(extent % n == 0, "slice: dimension ", to.dim, " of ", g.shape(x).str(),
                       " does not divide over mesh axis '", site.mesh.axis(site.axis).name,
                       "' of size ", n);
            const int64_t len = extent / n;
            return ir::slice(g, x, static_cast<int>(to.dim), site.coordinate * len,
                             (site.coordinate + 1) * len);
          },
          [](double, int64_t) { return 0.0; }};
}

}  // namespace solo::layout
