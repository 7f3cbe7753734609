// Collectives as graph nodes (AllGather, ReduceScatter, AllReduce on a chosen group; Send and
// Recv between pipeline stages), run by the executor through the MPI communicator under 2, 3
// and 4 ranks, and their paired gradients (Megatron's pairing: the backward of a gather is a
// reduce-scatter and the other way round). Inputs are functions of the rank and index; every
// expectation is a closed form that each rank checks on its own.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
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

// Each collective goes to the communicator of its group: group 0 is the world, group 1 the
// ranks of this rank's parity (split from the world), so a node sent to the wrong one would
// gather other ranks or fail the size check.
TEST(GraphCollectives, NodesRunOnTheirGroup) {
  const int R = world->size(), r = world->rank();
  const std::unique_ptr<comm::Communicator> parity = world->split(r % 2, r);
  const int m = parity->size();  // members: world ranks r % 2, r % 2 + 2, ...
  Graph g;
  const ValueId x = g.input({{2}, DType::F32}, "x");
  const ValueId s0 = ir::all_reduce(g, x, /*average=*/false, /*group=*/0);
  const ValueId s1 = ir::all_gather(g, x, m, 0, /*group=*/1);
  const auto out = run(g, {{x, rank_values(2, [](int q, int i) { return 10 * q + i; })}}, {s0, s1},
                       {world, parity.get()});
  // s0[i] = sum over the world of 10 q + i; block b of s1 is member b's x (world rank 2b + r % 2).
  EXPECT_EQ(mismatches(out[0], [&](int i) { return 10 * R * (R - 1) / 2 + R * i; }), 0u);
  EXPECT_EQ(mismatches(out[1], [&](int j) { return 10 * (2 * (j / 2) + r % 2) + j % 2; }), 0u);
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

// A two-stage pipeline over ranks 0 and 1 (other ranks idle) gives the gradients of the
// whole model on one rank. Model: h = x W1; z = silu(h) W2; loss = sum(z * z).
// Stage 0 computes h, sends it, receives dL/dh and seeds its backward with it; stage 1
// receives h, computes the loss and its gradients, and sends dL/dh back.
TEST(GraphCollectives, TwoStagePipelineMatchesOneRank) {
  const int r = world->rank();
  const ir::TensorType x_t{{4, 3}, DType::F32}, w1_t{{3, 5}, DType::F32}, w2_t{{5, 2}, DType::F32},
      h_t{{4, 5}, DType::F32};
  const auto ramp = [](size_t n, float scale) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(static_cast<int>(i % 7) - 3);
    return v;
  };
  const std::vector<float> xs = ramp(12, 0.3f), w1s = ramp(15, 0.2f), w2s = ramp(10, 0.25f);

  // The reference: the whole model on this rank alone.
  Graph whole;
  const ValueId x = whole.input(x_t, "x"), w1 = whole.input(w1_t, "w1"),
                w2 = whole.input(w2_t, "w2");
  const ValueId z = ir::matmul(whole, ir::silu(whole, ir::matmul(whole, x, w1)), w2);
  const ValueId loss = ir::sum(whole, ir::mul(whole, z, z));
  const std::vector<ValueId> grads = autograd::gradients(whole, loss, {w1, w2});
  const auto want = run(whole, {{x, xs}, {w1, w1s}, {w2, w2s}}, {loss, grads[0], grads[1]});

  if (r == 0) {
    Graph g;
    const ValueId sx = g.input(x_t, "x"), sw1 = g.input(w1_t, "w1");
    const ValueId h = ir::matmul(g, sx, sw1);
    const ValueId sent = ir::send(g, h, /*peer=*/1, /*tag=*/0);
    const ValueId dh = ir::recv(g, h_t, /*peer=*/1, /*tag=*/1);
    const ValueId dw1 = autograd::gradients(g, h, {sw1}, /*seed=*/dh)[0];
    const auto got = run(g, {{sx, xs}, {sw1, w1s}}, {sent, dw1});
    EXPECT_TRUE(got[0].empty());  // the token holds nothing
    EXPECT_EQ(got[1], want[1]);   // same kernels in the same order: bit for bit
  } else if (r == 1) {
    Graph g;
    const ValueId h = ir::recv(g, h_t, /*peer=*/0, /*tag=*/0);
    const ValueId sw2 = g.input(w2_t, "w2");
    const ValueId sz = ir::matmul(g, ir::silu(g, h), sw2);
    const ValueId sloss = ir::sum(g, ir::mul(g, sz, sz));
    const std::vector<ValueId> d = autograd::gradients(g, sloss, {h, sw2});
    const ValueId sent = ir::send(g, d[0], /*peer=*/0, /*tag=*/1);
    const auto got = run(g, {{sw2, w2s}}, {sloss, d[1], sent});
    EXPECT_EQ(got[0], want[0]);
    EXPECT_EQ(got[1], want[2]);
  }
}

// A send to itself, or to a rank outside the group, names the cause.
TEST(GraphCollectives, PointToPointPeersAreChecked) {
  const int R = world->size(), r = world->rank();
  for (int peer : {r, R}) {
    Graph g;
    const ValueId x = g.input({{2}, DType::F32}, "x");
    const ValueId t = ir::send(g, x, peer, 0);
    const std::string e = test::error_of([&] { run(g, {{x, std::vector<float>(2, 1.0f)}}, {t}); });
    EXPECT_NE(e.find("a peer is another rank of the group"), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace solo

int main(int argc, char** argv) {
  return solo::test::main_on_every_rank(argc, argv, "mpi_test_graph_collectives", solo::world);
}
