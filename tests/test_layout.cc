// Meshes, layouts and reshard rules in one process: coordinates and groups, local shapes and
// blocks, which rule each transition takes and what it sends, errors naming their cause, and
// the per-rank graphs a reshard builds (shapes checked on the meta backend). Runs across
// ranks are in mpi_test_layout.cc.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "solo/backend/backend.h"
#include "solo/core/op_info.h"
#include "solo/ir/ops.h"
#include "solo/layout/reshard.h"
#include "solo/runtime/executor.h"
#include "test_support.h"

namespace solo::layout {
namespace {

using test::error_of;
const AxisLayout R = AxisLayout::replicate(), P = AxisLayout::partial();
AxisLayout S(int64_t d) {
  return AxisLayout::split(d);
}

TEST(Mesh, CoordinatesAndGroupsAreRowMajor) {
  const Mesh mesh({{"dp", 2}, {"tp", 3}});
  EXPECT_EQ(mesh.devices(), 6);
  EXPECT_EQ(mesh.str(), "dp=2 x tp=3");
  EXPECT_EQ(mesh.coordinate(4), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(mesh.group_along(1, 4), (std::vector<int64_t>{3, 4, 5}));  // tp group of rank 4
  EXPECT_EQ(mesh.group_along(0, 4), (std::vector<int64_t>{1, 4}));     // dp group of rank 4
  // Ranks of one group share a color, and their keys are their coordinates.
  for (int k = 0; k < 2; ++k)
    for (int64_t r = 0; r < 6; ++r) {
      const std::vector<int64_t> group = mesh.group_along(k, r);
      for (size_t i = 0; i < group.size(); ++i) {
        EXPECT_EQ(mesh.color_along(k, group[i]), mesh.color_along(k, r));
        EXPECT_EQ(mesh.key_along(k, group[i]), static_cast<int64_t>(i));
      }
    }
  EXPECT_NE(mesh.color_along(1, 0), mesh.color_along(1, 3));
  EXPECT_NE(error_of([&] { mesh.coordinate(6); }).find("not in mesh"), std::string::npos);
  EXPECT_NE(error_of([] { Mesh({{"a", 2}, {"a", 2}}); }).find("used twice"), std::string::npos);
  EXPECT_NE(error_of([] { Mesh({{"a", 0}}); }).find("at least one device"), std::string::npos);
}

TEST(Layout, LocalShapesAndBlocks) {
  const Mesh mesh({{"dp", 2}, {"tp", 4}});
  const Shape global{8, 24};
  EXPECT_EQ(local_shape(global, {{S(0), S(1)}}, mesh), Shape({4, 6}));
  EXPECT_EQ(local_shape(global, {{P, S(0)}}, mesh), Shape({8 / 4, 24}));
  EXPECT_EQ(local_shape(global, {{R, P}}, mesh), global);
  // Two axes on one dimension: the earlier axis is the outer block (24 / 2 / 4 = 3).
  EXPECT_EQ(local_shape(global, {{S(1), S(1)}}, mesh), Shape({8, 3}));
  const Block b = block_of(global, {{S(1), S(1)}}, mesh, {1, 2}, 1);
  EXPECT_EQ(b.start, 12 + 2 * 3);
  EXPECT_EQ(b.length, 3);
  EXPECT_EQ(Layout({{S(1), P}}).str(), "[S(1), P]");
  EXPECT_NE(error_of([&] {
              local_shape(Shape{6, 10}, {{R, S(1)}}, mesh);
            }).find("does not divide over mesh axis 'tp' of size 4"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              local_shape(global, {{S(2), R}}, mesh);
            }).find("splits dimension 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { local_shape(global, {{R}}, mesh); }).find("one per mesh axis"),
            std::string::npos);
}

// Which rule each one-axis transition takes, and the bytes a device sends for it (ring
// algorithms over n = 4 devices, for a local block of B bytes before the step).
TEST(Reshard, EachTransitionHasItsRuleAndCost) {
  const Mesh mesh({{"tp", 4}});
  const Shape global{16, 8};
  const double B = 16 * 8 * 4;  // f32, replicated or partial: the whole tensor
  struct Case {
    AxisLayout from, to;
    std::string rule;
    double bytes;
  };
  const std::vector<Case> cases = {
      {P, R, "all-reduce", 2 * B * 3 / 4},
      {S(0), R, "all-gather", B / 4 * 3},
      {S(1), R, "all-gather", B / 4 * 3},
      {P, S(0), "reduce-scatter", B * 3 / 4},
      {R, S(1), "slice", 0},
      {R, P, "keep-on-first", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.from.str() + " -> " + c.to.str());
    const std::vector<ReshardStep> steps = reshard_steps(global, 4, {{c.from}}, {{c.to}}, mesh);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].rule->name, c.rule);
    EXPECT_EQ(steps[0].axis, 0);
    EXPECT_DOUBLE_EQ(steps[0].bytes_sent, c.bytes);
  }
  EXPECT_TRUE(reshard_steps(global, 4, {{S(1)}}, {{S(1)}}, mesh).empty());
}

TEST(Reshard, UnsupportedTransitionsNameTheCause) {
  const Mesh mesh({{"dp", 2}, {"tp", 2}});
  const Shape global{8, 8};
  EXPECT_NE(error_of([&] {
              reshard_steps(global, 4, {{S(0), R}}, {{S(1), R}}, mesh);
            }).find("all-to-all"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              reshard_steps(global, 4, {{S(0), R}}, {{S(0), S(0)}}, mesh);
            }).find("split by mesh axes 'tp' and 'dp' together"),
            std::string::npos);
}

// The graph a reshard appends on one device of a dp=2 x tp=2 mesh, run on meta: shapes only.
TEST(Reshard, BuildsTheCollectivesOnEachAxisGroup) {
  const Mesh mesh({{"dp", 2}, {"tp", 2}});
  const Shape global{8, 6};
  ir::Graph g;
  const ir::ValueId x = g.input({local_shape(global, {{P, S(0)}}, mesh), DType::F32}, "x");
  // [P, S(0)] -> [S(1), R]: a reduce-scatter along 1 over dp, an all-gather along 0 over tp.
  const ir::ValueId y = reshard(g, x, global, {{P, S(0)}}, {{S(1), R}}, mesh, {1, 0});
  EXPECT_EQ(g.shape(y), local_shape(global, {{S(1), R}}, mesh));
  std::vector<std::pair<OpKind, int64_t>> collectives;  // (op, group)
  for (int n = 0; n < g.num_nodes(); ++n)
    if (op_info(g.node(n).op).collective)
      collectives.push_back({g.node(n).op, g.node(n).attrs.i("group")});
  EXPECT_EQ(collectives, (std::vector<std::pair<OpKind, int64_t>>{{OpKind::ReduceScatter, 0},
                                                                  {OpKind::AllGather, 1}}));
  auto meta = make_backend("meta");
  const runtime::RunResult r = runtime::Executor(*meta).run(g, {y}, {{x, nullptr}});
  EXPECT_EQ(r.outputs.size(), 1u);
  // A local value of the wrong shape is refused.
  EXPECT_NE(error_of([&] {
              reshard(g, y, global, {{P, S(0)}}, {{R, R}}, mesh, {0, 0});
            }).find("the local value has shape"),
            std::string::npos);
}

}  // namespace
}  // namespace solo::layout
