// Reshards executed across ranks (2, 3 and 4 under CTest): every rank holds its block of a
// global tensor G[i, j] = 100 i + j under one layout, reshards to another, and must then hold
// exactly its block under the new one. Partial layouts hold integer terms that sum to G
// (coordinate 0 holds G - (n-1) K, the others K), so every value is exact in f32.
#include <gtest/gtest.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "mpi_test_support.h"
#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/ir/ops.h"
#include "solo/layout/reshard.h"
#include "solo/runtime/executor.h"

namespace solo::layout {
namespace {

comm::Communicator* world = nullptr;
constexpr float kTerm = 7.0f;

float global_value(int64_t i, int64_t j) {
  return static_cast<float>(100 * i + j);
}

// This device's block of G under a layout on a 1-D mesh (coordinate c of n).
std::vector<float> block(const Shape& global, const AxisLayout& a, int64_t c, int64_t n) {
  const Mesh mesh({{"x", n}});
  const Layout layout{{a}};
  const Block rows = block_of(global, layout, mesh, {c}, 0);
  const Block cols = block_of(global, layout, mesh, {c}, 1);
  std::vector<float> v;
  for (int64_t i = rows.start; i < rows.start + rows.length; ++i)
    for (int64_t j = cols.start; j < cols.start + cols.length; ++j) {
      float x = global_value(i, j);
      if (a.kind == AxisLayout::Partial) x = c == 0 ? x - static_cast<float>(n - 1) * kTerm : kTerm;
      v.push_back(x);
    }
  return v;
}

// Reshards this rank's block from `from` to `to` on the world, returns the new block.
std::vector<float> resharded(const Shape& global, const AxisLayout& from, const AxisLayout& to) {
  const int64_t n = world->size(), c = world->rank();
  const Mesh mesh({{"x", n}});
  ir::Graph g;
  const ir::ValueId x = g.input({local_shape(global, {{from}}, mesh), DType::F32}, "x");
  const ir::ValueId y = reshard(g, x, global, {{from}}, {{to}}, mesh, {c});
  auto cpu = make_backend("cpu");
  const std::vector<float> in = block(global, from, c, n);
  Storage xd(*cpu, in.size() * sizeof(float));
  cpu->copy_from_host(xd.data(), in.data(), xd.bytes());
  const runtime::RunResult r =
      runtime::Executor(*cpu, nullptr, world).run(g, {y}, {{x, xd.data()}});
  std::vector<float> out(r.outputs[0]->bytes() / sizeof(float));
  cpu->copy_to_host(out.data(), r.outputs[0]->data(), r.outputs[0]->bytes());
  return out;
}

TEST(Reshard, EveryRuleGivesTheExpectedBlock) {
  const int64_t n = world->size(), c = world->rank();
  const Shape global{12, 24};  // divisible by 2, 3 and 4 on both dimensions
  const AxisLayout R = AxisLayout::replicate(), P = AxisLayout::partial();
  const AxisLayout S0 = AxisLayout::split(0), S1 = AxisLayout::split(1);
  const std::vector<std::pair<AxisLayout, AxisLayout>> cases = {
      {P, R}, {S0, R}, {S1, R}, {P, S0}, {P, S1}, {R, S0}, {R, S1}, {R, R}, {S1, S1}};
  for (const auto& [from, to] : cases) {
    SCOPED_TRACE(from.str() + " -> " + to.str() + " on rank " + std::to_string(c));
    EXPECT_EQ(resharded(global, from, to), block(global, to, c, n));
  }
  // R -> P: the terms are G on coordinate 0 and zeros elsewhere (they still sum to G).
  std::vector<float> want = block(global, R, c, n);
  if (c != 0) want.assign(want.size(), 0.0f);
  EXPECT_EQ(resharded(global, R, P), want);
}

}  // namespace
}  // namespace solo::layout

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto w = solo::comm::make_mpi_communicator();  // initialises MPI; finalised at exit
  solo::layout::world = w.get();
  return solo::test::run_tests_on_every_rank("mpi_test_layout", w->rank());
}
