#include "solo/layout/reshard.h"

#include "solo/core/error.h"
#include "solo/layout/reshard_rules.h"

namespace solo::layout {

const std::vector<ReshardRule>& reshard_rules() {
  static const std::vector<ReshardRule> rules = {partial_to_replicate(), split_to_replicate(),
                                                 partial_to_split(), replicate_to_split(),
                                                 replicate_to_partial()};
  return rules;
}

namespace {

// The rule for axis k's transition; throws when none applies or when another axis splits the
// same dimension (the block order of nested splits is not handled yet).
const ReshardRule& rule_for(const Layout& from, const Layout& to, const Mesh& mesh, int k) {
  const AxisLayout &a = from.axes[static_cast<size_t>(k)], &b = to.axes[static_cast<size_t>(k)];
  for (const AxisLayout* changed : {&a, &b}) {
    if (changed->kind != AxisLayout::Split) continue;
    for (int j = 0; j < mesh.num_axes(); ++j)
      for (const Layout* l : {&from, &to}) {
        const AxisLayout& other = l->axes[static_cast<size_t>(j)];
        SOLO_CHECK(j == k || other.kind != AxisLayout::Split || other.dim != changed->dim,
                   "reshard ", from.str(), " -> ", to.str(), " on mesh ", mesh.str(),
                   ": dimension ", changed->dim, " is split by mesh axes '", mesh.axis(k).name,
                   "' and '", mesh.axis(j).name,
                   "' together, which resharding does not handle yet; split it on one axis");
      }
  }
  for (const ReshardRule& rule : reshard_rules())
    if (rule.applies(a, b)) return rule;
  SOLO_FAIL("reshard ", from.str(), " -> ", to.str(), " on mesh ", mesh.str(), ": no rule turns ",
            a.str(), " into ", b.str(), " on axis '", mesh.axis(k).name,
            "' (S(i) -> S(j) needs an all-to-all, S -> P is never needed); go through R");
}

void check_layouts(const Shape& global, const Layout& from, const Layout& to, const Mesh& mesh) {
  local_shape(global, from, mesh);  // throws if either layout does not fit
  local_shape(global, to, mesh);
}

}  // namespace

std::vector<ReshardStep> reshard_steps(const Shape& global, size_t elem_bytes, const Layout& from,
                                       const Layout& to, const Mesh& mesh) {
  check_layouts(global, from, to, mesh);
  std::vector<ReshardStep> steps;
  Layout current = from;
  for (int k = 0; k < mesh.num_axes(); ++k) {
    const auto kk = static_cast<size_t>(k);
    if (from.axes[kk] == to.axes[kk]) continue;
    const ReshardRule& rule = rule_for(from, to, mesh, k);
    const double bytes = static_cast<double>(local_shape(global, current, mesh).numel()) *
                         static_cast<double>(elem_bytes);
    steps.push_back({&rule, k, rule.bytes_sent(bytes, mesh.axis(k).size)});
    current.axes[kk] = to.axes[kk];
  }
  return steps;
}

ir::ValueId reshard(ir::Graph& g, ir::ValueId local, const Shape& global, const Layout& from,
                    const Layout& to, const Mesh& mesh, const std::vector<int64_t>& coordinate) {
  check_layouts(global, from, to, mesh);
  SOLO_CHECK(g.shape(local) == local_shape(global, from, mesh),
             "reshard: the local value has shape ", g.shape(local).str(), " but layout ",
             from.str(), " of ", global.str(), " on mesh ", mesh.str(), " gives ",
             local_shape(global, from, mesh).str());
  SOLO_CHECK(static_cast<int>(coordinate.size()) == mesh.num_axes(), "reshard: coordinate has ",
             coordinate.size(), " entries for mesh ", mesh.str());
  for (int k = 0; k < mesh.num_axes(); ++k) {
    const auto kk = static_cast<size_t>(k);
    if (from.axes[kk] == to.axes[kk]) continue;
    const ReshardRule& rule = rule_for(from, to, mesh, k);
    local = rule.apply(g, local, from.axes[kk], to.axes[kk], ReshardSite{mesh, k, coordinate[kk]});
  }
  return local;
}

}  // namespace solo::layout
