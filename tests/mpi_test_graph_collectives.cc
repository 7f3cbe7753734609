// Collectives as graph nodes (AllGather, ReduceScatter, AllReduce on a chosen group), run by
// the executor through the MPI communicator under 2, 3 and 4 ranks, and their paired
// gradients (Megatron's pairing: the backward of a gather is a reduce-scatter and the other
// way round). Inputs are functions of the rank and index; every expectation is a closed form
// that each rank checks on its own.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mpi_test_support.h"
#include "solo/autograd/autograd.h"
#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"
#include "test_support.h"

namespace solo {
namespace {

using ir::Graph;
using ir::ValueId;

comm::Communicator* world = nullptr;

// Runs `outputs` of g on the cpu backend with `groups` (group 0 first) from host f32 inputs.
std::vector<std::vector<float>> run(const Graph& g,
                                    const std::vector<std::pair<ValueId, std::vector<float>>>& in,
                                    const std::vector<ValueId>& outputs,
                                    std::vector<comm::Communicator*> groups = {world}) {
  auto backend = make_backend("cpu");
  std::vector<std::unique_ptr<Storage>> storage;
  std::unordered_map<ValueId, const void*> bound;
  for (const auto& [v, values] : in) {
    storage.push_back(std::make_unique<Storage>(*backend, values.size() * sizeof(float)));
    backend->copy_from_host(storage.back()->data(), values.data(), storage.back()->bytes());
    bound[v] = storage.back()->data();
  }
  runtime::Executor exec(*backend, nullptr, std::move(groups));
  const runtime::RunResult r = exec.run(g, runtime::plan_memory(g, outputs), bound);
  std::vector<std::vector<float>> out;
  for (const auto& s : r.outputs) {
    out.emplace_back(s->bytes() / sizeof(float));
    backend->copy_to_host(out.back().data(), s->data(), s->bytes());
  }
  return out;
}

// f(r, i) for i in [0, n): this rank's input.
template <class F>
std::vector<float> rank_values(size_t n, F f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(f(world->rank(), static_cast<int>(i)));
  return v;
}

template <class F>
size_t mismatches(const std::vector<float>& got, F want) {
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    wrong += got[i] != static_cast<float>(want(static_cast<int>(i)));
  return wrong;
}

// x [3, 2] = 100 r + i on rank r -> [3R, 2]: block b is rank b's x.
TEST(GraphCollectives, AllGatherAlongAxis0) {
  const int R = world->size();
  Graph g;
  const ValueId x = g.input({{3, 2}, DType::F32}, "x");
  const ValueId y = ir::all_gather(g, x, R);
  ASSERT_EQ(g.shape(y), Shape({3 * R, 2}));
  const auto out = run(g, {{x, rank_values(6, [](int r, int i) { return 100 * r + i; })}}, {y});
  EXPECT_EQ(mismatches(out[0], [](int j) { return 100 * (j / 6) + j % 6; }), 0u);
}

// x [2, 3] = 100 r + i -> [2, 3R]: row t holds every rank's row t, in rank order.
TEST(GraphCollectives, AllGatherAlongAxis1) {
  const int R = world->size();
  Graph g;
  const ValueId x = g.input({{2, 3}, DType::F32}, "x");
  const ValueId y = ir::all_gather(g, x, R, /*axis=*/1);
  ASSERT_EQ(g.shape(y), Shape({2, 3 * R}));
  const auto out = run(g, {{x, rank_values(6, [](int r, int i) { return 100 * r + i; })}}, {y});
  EXPECT_EQ(mismatches(out[0],
                       [R](int j) {
                         const int row = j / (3 * R), b = j % (3 * R) / 3, c = j % 3;
                         return 100 * b + 3 * row + c;
                       }),
            0u);
}

// x [2R, 3] = (r+1)(i+1) -> [2, 3]: rank r gets the sum over ranks of block r, that is
// (i+1) R(R+1)/2 at global index i = 6r + j.
TEST(GraphCollectives, ReduceScatterAlongAxis0) {
  const int R = world->size(), r = world->rank();
  Graph g;
  const ValueId x = g.input({{2 * R, 3}, DType::F32}, "x");
  const ValueId y = ir::reduce_scatter(g, x, R);
  ASSERT_EQ(g.shape(y), Shape({2, 3}));
  const auto out = run(g,
                       {{x, rank_values(static_cast<size_t>(6 * R),
                                        [](int q, int i) { return (q + 1) * (i + 1); })}},
                       {y});
  EXPECT_EQ(mismatches(out[0], [&](int j) { return (6 * r + j + 1) * R * (R + 1) / 2; }), 0u);
}

// x [2, 2R] = (r+1)(i+1) -> [2, 2]: rank r gets columns [2r, 2r+2) of every row, summed.
TEST(GraphCollectives, ReduceScatterAlongAxis1) {
  const int R = world->size(), r = world->rank();
  Graph g;
  const ValueId x = g.input({{2, 2 * R}, DType::F32}, "x");
  const ValueId y = ir::reduce_scatter(g, x, R, /*axis=*/1);
  ASSERT_EQ(g.shape(y), Shape({2, 2}));
  const auto out = run(g,
                       {{x, rank_values(static_cast<size_t>(4 * R),
                                        [](int q, int i) { return (q + 1) * (i + 1); })}},
                       {y});
  EXPECT_EQ(mismatches(out[0],
                       [&](int j) {
                         const int global = (j / 2) * 2 * R + 2 * r + j % 2;
                         return (global + 1) * R * (R + 1) / 2;
                       }),
            0u);
}

// L = sum over ranks q of sum(allgather(x) * w_q), w_q[k] = (q+1)(k+1): rank r's x sits at
// block r of every rank's gather, so dL/dx_r[i] = (4r + i + 1) R(R+1)/2 (a reduce-scatter).
TEST(GraphCollectives, AllGatherGradientIsAReduceScatter) {
  const int R = world->size(), r = world->rank();
  Graph g;
  const ValueId x = g.input({{4}, DType::F32}, "x");
  const ValueId w = g.input({{4 * R}, DType::F32}, "w");
  const ValueId loss = ir::sum(g, ir::mul(g, ir::all_gather(g, x, R), w));
  const ValueId dx = autograd::gradients(g, loss, {x})[0];
  ASSERT_EQ(g.producer(dx).op, OpKind::ReduceScatter);
  const auto out = run(g,
                       {{x, rank_values(4, [](int q, int i) { return q - i; })},
                        {w, rank_values(static_cast<size_t>(4 * R),
                                        [](int q, int k) { return (q + 1) * (k + 1); })}},
                       {dx});
  EXPECT_EQ(mismatches(out[0], [&](int i) { return (4 * r + i + 1) * R * (R + 1) / 2; }), 0u);
}

// L = sum over ranks q of sum(reducescatter(x) * w_q), w_q[j] = (q+1)(j+1): block b of every
// rank's x reaches rank b's sum, so dL/dx[2b + j] = (b+1)(j+1) on every rank (an all-gather).
TEST(GraphCollectives, ReduceScatterGradientIsAnAllGather) {
  const int R = world->size();
  Graph g;
  const ValueId x = g.input({{2 * R}, DType::F32}, "x");
  const ValueId w = g.input({{2}, DType::F32}, "w");
  const ValueId loss = ir::sum(g, ir::mul(g, ir::reduce_scatter(g, x, R), w));
  const ValueId dx = autograd::gradients(g, loss, {x})[0];
  ASSERT_EQ(g.producer(dx).op, OpKind::AllGather);
  const auto out =
      run(g,
          {{x, rank_values(static_cast<size_t>(2 * R), [](int q, int i) { return q * i; })},
           {w, rank_values(2, [](int q, int j) { return (q + 1) * (j + 1); })}},
          {dx});
  EXPECT_EQ(mismatches(out[0], [](int i) { return (i / 2 + 1) * (i % 2 + 1); }), 0u);
}

// Each collective goes to the communicator of its group: group 1 here is a second
// communicator over the same ranks, group 0 the world.
TEST(GraphCollectives, NodesRunOnTheirGroup) {
  const int R = world->size();
  auto second = comm::make_mpi_communicator();
  Graph g;
  const ValueId x = g.input({{2}, DType::F32}, "x");
  const ValueId s0 = ir::all_reduce(g, x, /*average=*/false, /*group=*/0);
  const ValueId s1 = ir::all_gather(g, ir::mul_scalar(g, s0, 2.0), R, 0, /*group=*/1);
  const auto out = run(g, {{x, rank_values(2, [](int q, int i) { return q + i; })}}, {s1},
                       {world, second.get()});
  // s0[i] = sum_q (q + i) = R(R-1)/2 + R i on every rank; the gather repeats 2 s0 R times.
  EXPECT_EQ(mismatches(out[0], [&](int j) { return 2 * (R * (R - 1) / 2 + R * (j % 2)); }), 0u);
}

// A graph built for another number of ranks, or for a group the executor lacks, stops with
// the cause on every rank before any rank enters a collective.
TEST(GraphCollectives, MismatchedRanksAndMissingGroupsAreErrors) {
  const int R = world->size();
  Graph g;
  const ValueId x = g.input({{2}, DType::F32}, "x");
  const ValueId y = ir::all_gather(g, x, R + 1);
  const std::string wrong_size = test::error_of([&] {
    run(g, {{x, std::vector<float>(2, 1.0f)}}, {y});
  });
  EXPECT_NE(wrong_size.find("built for " + std::to_string(R + 1) + " ranks"), std::string::npos)
      << wrong_size;
  Graph h;
  const ValueId a = h.input({{2}, DType::F32}, "a");
  const ValueId b = ir::all_reduce(h, a, false, /*group=*/1);
  const std::string missing = test::error_of([&] {
    run(h, {{a, std::vector<float>(2, 1.0f)}}, {b});
  });
  EXPECT_NE(missing.find("group 1"), std::string::npos) << missing;
}

}  // namespace
}  // namespace solo

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto w = solo::comm::make_mpi_communicator();  // initialises MPI; finalised at exit
  if (w->size() < 2) {
    std::fprintf(stderr, "mpi_test_graph_collectives: needs at least 2 ranks (mpirun -np 2)\n");
    return 1;
  }
  solo::world = w.get();
  return solo::test::run_tests_on_every_rank("mpi_test_graph_collectives", w->rank());
}
