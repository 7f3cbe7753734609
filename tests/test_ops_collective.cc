// Collective graph nodes in one process: shapes and errors of the builders, the paired
// gradients they get, one rank (the identity), and the meta backend standing in for a rank of
// a larger group (shapes and memory only). Runs across ranks are in
// mpi_test_graph_collectives.cc.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "solo/autograd/autograd.h"
#include "solo/backend/backend.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"
#include "test_support.h"

namespace solo {
namespace {

using ir::Graph;
using ir::ValueId;
using test::error_of;

TEST(CollectiveOps, ShapesAlongAnyAxis) {
  Graph g;
  const ValueId x = g.input({{4, 6, 2}, DType::F32}, "x");
  EXPECT_EQ(g.shape(ir::all_gather(g, x, 3)), Shape({12, 6, 2}));
  EXPECT_EQ(g.shape(ir::all_gather(g, x, 3, 1)), Shape({4, 18, 2}));
  EXPECT_EQ(g.shape(ir::all_gather(g, x, 3, -1)), Shape({4, 6, 6}));
  EXPECT_EQ(g.shape(ir::reduce_scatter(g, x, 2)), Shape({2, 6, 2}));
  EXPECT_EQ(g.shape(ir::reduce_scatter(g, x, 3, 1)), Shape({4, 2, 2}));
  // Another axis goes to the front and back: the node itself works on axis 0.
  const ValueId y = ir::all_gather(g, x, 2, 1, /*group=*/1);
  const ir::Node& back = g.producer(y);
  ASSERT_EQ(back.op, OpKind::Permute);
  const ir::Node& gather = g.producer(back.inputs[0]);
  ASSERT_EQ(gather.op, OpKind::AllGather);
  EXPECT_EQ(gather.attrs.i("ranks"), 2);
  EXPECT_EQ(gather.attrs.i("group"), 1);
  EXPECT_EQ(g.shape(gather.outputs[0]), Shape({12, 4, 2}));
}

TEST(CollectiveOps, BadArgumentsNameTheCause) {
  Graph g;
  const ValueId x = g.input({{5, 2}, DType::F32}, "x");
  const ValueId s = g.input({{}, DType::F32}, "s");
  const ValueId b = g.input({{4}, DType::Bool}, "b");
  const int before = g.num_nodes();
  EXPECT_NE(error_of([&] { ir::reduce_scatter(g, x, 2); }).find("not divisible by the 2 ranks"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ir::all_gather(g, x, 0); }).find("at least one rank"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ir::all_gather(g, x, 2, 2); }).find("axis 2 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ir::all_gather(g, s, 2); }).find("rank >= 1"), std::string::npos);
  EXPECT_NE(error_of([&] { ir::reduce_scatter(g, b, 2); }).find("float or integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ir::all_reduce(g, x, false, -1); }).find("negative"), std::string::npos);
  EXPECT_EQ(g.num_nodes(), before);  // nothing appended on error
}

// Megatron's pairing: gather <-> reduce-scatter, with the node's ranks and group.
TEST(CollectiveOps, GradientsArePairedCollectives) {
  Graph g;
  const ValueId x = g.input({{4, 3}, DType::F32}, "x");
  const ValueId gathered = ir::all_gather(g, x, 2, 0, /*group=*/1);
  const ValueId scattered = ir::reduce_scatter(g, gathered, 4, 0, /*group=*/2);
  const ValueId loss = ir::sum(g, scattered);
  const ValueId dx = autograd::gradients(g, loss, {x})[0];
  const ir::Node& rs = g.producer(dx);
  ASSERT_EQ(rs.op, OpKind::ReduceScatter);
  EXPECT_EQ(rs.attrs.i("ranks"), 2);
  EXPECT_EQ(rs.attrs.i("group"), 1);
  const ir::Node& ag = g.producer(rs.inputs[0]);
  ASSERT_EQ(ag.op, OpKind::AllGather);
  EXPECT_EQ(ag.attrs.i("ranks"), 4);
  EXPECT_EQ(ag.attrs.i("group"), 2);
}

// Built for one rank, every collective is the identity (no communicator needed).
TEST(CollectiveOps, OneRankIsTheIdentity) {
  Graph g;
  const ValueId x = g.input({{2, 3}, DType::F32}, "x");
  const ValueId y = ir::reduce_scatter(g, ir::all_gather(g, x, 1, 1), 1);
  auto cpu = make_backend("cpu");
  const std::vector<float> xs = {1, -2, 3, 4.5f, 5, 6};
  Storage xd(*cpu, 24);
  cpu->copy_from_host(xd.data(), xs.data(), 24);
  const runtime::RunResult r = runtime::Executor(*cpu).run(g, {y}, {{x, xd.data()}});
  std::vector<float> got(6);
  cpu->copy_to_host(got.data(), r.outputs[0]->data(), 24);
  EXPECT_EQ(got, xs);
}

// The meta backend plans a rank of an 8-way group without any communicator: the gathered
// activations are in its memory plan.
TEST(CollectiveOps, MetaPlansARankOfALargerGroup) {
  Graph g;
  const ValueId x = g.input({{1024, 256}, DType::F32}, "x");  // 1 MiB per rank
  const ValueId y = ir::sum(g, ir::all_gather(g, x, 8));
  auto meta = make_backend("meta");
  const runtime::MemoryPlan plan = runtime::plan_memory(g, {y});
  const runtime::RunResult r = runtime::Executor(*meta).run(g, plan, {{x, nullptr}});
  EXPECT_GE(plan.peak_bytes(), size_t{8} << 20);  // the 8 MiB gather
  EXPECT_EQ(r.peak_bytes, plan.peak_bytes());
}

}  // namespace
}  // namespace solo
