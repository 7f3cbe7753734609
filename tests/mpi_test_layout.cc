// Reshards executed across ranks (2, 3 and 4 under CTest): every rank holds its block of a
// global tensor G[i, j] = 100 i + j under one layout, reshards to another, and must then hold
// exactly its block under the new one. Partial layouts hold integer terms that sum to G
// (coordinate 0 holds G - (n-1) K, the others K), so every value is exact in f32. Then a
// tensor-parallel MLP built from layouts against the same MLP on one rank.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mpi_test_support.h"
#include "solo/autograd/autograd.h"
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

// This device's block of G under a layout on any mesh: the Split blocks, then for each
// Partial axis (in order) the term of this coordinate.
std::vector<float> block(const Shape& global, const Layout& layout, const Mesh& mesh,
                         const std::vector<int64_t>& coordinate) {
  const Block rows = block_of(global, layout, mesh, coordinate, 0);
  const Block cols = block_of(global, layout, mesh, coordinate, 1);
  std::vector<float> v;
  for (int64_t i = rows.start; i < rows.start + rows.length; ++i)
    for (int64_t j = cols.start; j < cols.start + cols.length; ++j) {
      float x = global_value(i, j);
      for (int k = 0; k < mesh.num_axes(); ++k) {
        if (layout.axes[static_cast<size_t>(k)].kind != AxisLayout::Partial) continue;
        const int64_t c = coordinate[static_cast<size_t>(k)], n = mesh.axis(k).size;
        x = c == 0 ? x - static_cast<float>(n - 1) * kTerm : kTerm;
      }
      v.push_back(x);
    }
  return v;
}

// On 4 ranks as dp=2 x tp=2, each axis its own communicator (split from the world): every
// pair of layouts the rules connect gives each rank its block.
TEST(Reshard, TwoAxisMeshUsesEachAxisGroup) {
  if (world->size() != 4) GTEST_SKIP() << "needs 4 ranks (a 2 x 2 mesh)";
  const Mesh mesh({{"dp", 2}, {"tp", 2}});
  const int64_t rank = world->rank();
  const std::vector<int64_t> coord = mesh.coordinate(rank);
  std::vector<std::unique_ptr<comm::Communicator>> axis_comms;
  for (int k = 0; k < 2; ++k)
    axis_comms.push_back(world->split(static_cast<int>(mesh.color_along(k, rank)),
                                      static_cast<int>(mesh.key_along(k, rank))));
  const Shape global{8, 12};
  const AxisLayout R = AxisLayout::replicate(), P = AxisLayout::partial();
  const AxisLayout S0 = AxisLayout::split(0), S1 = AxisLayout::split(1);
  const std::vector<std::pair<Layout, Layout>> cases = {
      {{{P, S0}}, {{S1, R}}}, {{{S0, S1}}, {{R, R}}}, {{{P, P}}, {{R, S1}}},
      {{{R, R}}, {{S1, S0}}}, {{{S0, P}}, {{R, S1}}}, {{{P, R}}, {{S0, R}}}};
  auto cpu = make_backend("cpu");
  for (const auto& [from, to] : cases) {
    SCOPED_TRACE(from.str() + " -> " + to.str() + " on rank " + std::to_string(rank));
    ir::Graph g;
    const ir::ValueId x = g.input({local_shape(global, from, mesh), DType::F32}, "x");
    const ir::ValueId y = reshard(g, x, global, from, to, mesh, coord);
    const std::vector<float> in = block(global, from, mesh, coord);
    Storage xd(*cpu, in.size() * sizeof(float));
    cpu->copy_from_host(xd.data(), in.data(), xd.bytes());
    runtime::Executor exec(*cpu, nullptr, {axis_comms[0].get(), axis_comms[1].get()});
    const runtime::RunResult r = exec.run(g, {y}, {{x, xd.data()}});
    std::vector<float> got(r.outputs[0]->bytes() / sizeof(float));
    cpu->copy_to_host(got.data(), r.outputs[0]->data(), r.outputs[0]->bytes());
    EXPECT_EQ(got, block(global, to, mesh, coord));
  }
}

// Runs g on the cpu backend over the world; returns the requested outputs.
std::vector<std::vector<float>> run(
    const ir::Graph& g, const std::vector<std::pair<ir::ValueId, std::vector<float>>>& in,
    const std::vector<ir::ValueId>& outputs) {
  auto cpu = make_backend("cpu");
  std::vector<std::unique_ptr<Storage>> storage;
  std::unordered_map<ir::ValueId, const void*> bound;
  for (const auto& [v, values] : in) {
    storage.push_back(std::make_unique<Storage>(*cpu, values.size() * sizeof(float)));
    cpu->copy_from_host(storage.back()->data(), values.data(), storage.back()->bytes());
    bound[v] = storage.back()->data();
  }
  const runtime::RunResult r = runtime::Executor(*cpu, nullptr, world).run(g, outputs, bound);
  std::vector<std::vector<float>> out;
  for (const auto& st : r.outputs) {
    out.emplace_back(st->bytes() / sizeof(float));
    cpu->copy_to_host(out.back().data(), st->data(), st->bytes());
  }
  return out;
}

// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of a row-major matrix with `width` columns.
std::vector<float> submatrix(const std::vector<float>& m, int64_t width, int64_t r0, int64_t rows,
                             int64_t c0, int64_t cols) {
  std::vector<float> out;
  for (int64_t i = r0; i < r0 + rows; ++i)
    for (int64_t j = c0; j < c0 + cols; ++j) out.push_back(m[static_cast<size_t>(i * width + j)]);
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    wrong += std::abs(got[i] - want[i]) > 1e-5f * std::abs(want[i]) + 1e-5f;
  EXPECT_EQ(wrong, 0u) << what << " on rank " << world->rank();
}

// A Megatron MLP built from layouts: W1 column-parallel (S(1)), W2 row-parallel (S(0)), the
// output a partial sum made replicated by a reshard (an all-reduce, whose gradient passes
// through). Each rank's loss is the one-rank loss, and its weight gradients are its blocks of
// the one-rank gradients.
TEST(TensorParallel, MlpFromLayoutsMatchesOneRank) {
  const int64_t n = world->size(), c = world->rank();
  const int64_t B = 4, H = 8, F = 12 * n;
  const Mesh mesh({{"tp", n}});
  const auto values = [](size_t count, float scale) {
    std::vector<float> v(count);
    for (size_t i = 0; i < count; ++i)
      v[i] = scale * static_cast<float>(static_cast<int>(i % 11) - 5);
    return v;
  };
  const std::vector<float> xs = values(static_cast<size_t>(B * H), 0.1f),
                           w1s = values(static_cast<size_t>(H * F), 0.05f),
                           w2s = values(static_cast<size_t>(F * H), 0.04f);
  const Shape w1_shape{H, F}, w2_shape{F, H};

  ir::Graph whole;
  const ir::ValueId x = whole.input({{B, H}, DType::F32}, "x");
  const ir::ValueId w1 = whole.input({w1_shape, DType::F32}, "w1");
  const ir::ValueId w2 = whole.input({w2_shape, DType::F32}, "w2");
  const ir::ValueId z = ir::matmul(whole, ir::silu(whole, ir::matmul(whole, x, w1)), w2);
  const ir::ValueId loss = ir::sum(whole, ir::mul(whole, z, z));
  const std::vector<ir::ValueId> grads = autograd::gradients(whole, loss, {w1, w2});
  const auto want = run(whole, {{x, xs}, {w1, w1s}, {w2, w2s}}, {loss, grads[0], grads[1]});

  const Layout column{{AxisLayout::split(1)}}, row{{AxisLayout::split(0)}};
  ir::Graph g;
  const ir::ValueId lx = g.input({{B, H}, DType::F32}, "x");
  const ir::ValueId lw1 = g.input({local_shape(w1_shape, column, mesh), DType::F32}, "w1");
  const ir::ValueId lw2 = g.input({local_shape(w2_shape, row, mesh), DType::F32}, "w2");
  const ir::ValueId partial = ir::matmul(g, ir::silu(g, ir::matmul(g, lx, lw1)), lw2);
  const ir::ValueId lz = reshard(g, partial, Shape{B, H}, {{AxisLayout::partial()}},
                                 Layout::replicated(mesh), mesh, {c});
  const ir::ValueId lloss = ir::sum(g, ir::mul(g, lz, lz));
  const std::vector<ir::ValueId> lgrads = autograd::gradients(g, lloss, {lw1, lw2});
  const int64_t f = F / n;  // this rank's share of the hidden features
  const auto got = run(g,
                       {{lx, xs},
                        {lw1, submatrix(w1s, F, 0, H, c * f, f)},
                        {lw2, submatrix(w2s, H, c * f, f, 0, H)}},
                       {lloss, lgrads[0], lgrads[1]});
  expect_close(got[0], want[0], "loss");
  expect_close(got[1], submatrix(want[1], F, 0, H, c * f, f), "dW1 block");
  expect_close(got[2], submatrix(want[2], H, c * f, f, 0, H), "dW2 block");
}

}  // namespace
}  // namespace solo::layout

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto w = solo::comm::make_mpi_communicator();  // initialises MPI; finalised at exit
  solo::layout::world = w.get();
  return solo::test::run_tests_on_every_rank("mpi_test_layout", w->rank());
}
