// ZeRO 0-3 end to end at the graph level, under 2, 3 and 4 ranks: two AdamW steps of a small
// model with gradient clipping, compiled for every stage (and ZeRO-3 again with its gathers
// prefetched one block ahead) and run by the executor through MPI,
// give on each rank the same loss, parameters, optimizer states and clipped gradients as
// the same two steps run on one rank (computed by each rank on its own). The step has the
// global batch's shapes; each rank's program computes on its rows. Outputs kept as blocks are
// compared with their block of the reference; the second step reads the first one's blocks as
// inputs (ZeRO-3 gathers them). Some tensors do not divide by every rank count ([5] never does), so
// the whole-tensor fallback runs too. Every run's measured peak equals its memory plan's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mpi_test_support.h"
#include "solo/autograd/autograd.h"
#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/compile/data_parallel.h"
#include "solo/compile/program.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"

namespace solo {
namespace {

using ir::Graph;
using ir::ValueId;

comm::Communicator* world = nullptr;

constexpr int kRows = 2;                                         // rows per rank
const std::vector<Shape> kParams = {{12, 8}, {8, 4}, {4}, {5}};  // w1, w2, bias, c

// Host values of a tensor: whole, or this rank's block (`shards` > 1).
struct HostTensor {
  std::vector<float> values;
  int64_t shards = 1;
};

// One AdamW step of y = silu(x w1) w2 + b, loss = mean(y^2) + mean(c^2), with the global
// gradient norm clipped to 0.05. `state` holds p, m, v per parameter (empty: the first step,
// whose states are created as zeros); shards mark inputs held as blocks.
struct Step {
  Graph g;
  ValueId x = ir::kNoValue, loss = ir::kNoValue, lr = ir::kNoValue, b1 = ir::kNoValue,
          b2 = ir::kNoValue;
  std::vector<ValueId> inputs;   // per parameter: p, m, v (m, v absent at the first step)
  std::vector<ValueId> outputs;  // loss, then per parameter: p', m', v', clipped gradient
};

Step build_step(int rows, const std::vector<HostTensor>* state) {
  Step s;
  Graph& g = s.g;
  s.x = g.input({{rows, 12}, DType::F32}, "x", /*batch=*/true);
  std::vector<ValueId> p, m, v;
  for (size_t i = 0; i < kParams.size(); ++i) {
    auto in = [&](size_t k) {
      const int64_t shards = state ? (*state)[3 * i + k].shards : 1;
      return g.input({kParams[i], DType::F32}, std::to_string(3 * i + k), false, shards);
    };
    p.push_back(in(0));
    m.push_back(state ? in(1) : ir::full(g, kParams[i], DType::F32, 0.0));
    v.push_back(state ? in(2) : ir::full(g, kParams[i], DType::F32, 0.0));
    s.inputs.push_back(p.back());
    if (state) s.inputs.insert(s.inputs.end(), {m.back(), v.back()});
  }
  // Two blocks, as a model's layers: ZeRO-3's prefetch gathers the second's weights ahead.
  ValueId h, y;
  {
    ir::ScopeGuard layer("layers.0");
    h = ir::silu(g, ir::matmul(g, s.x, p[0]));
  }
  {
    ir::ScopeGuard layer("layers.1");
    y = ir::add(g, ir::matmul(g, h, p[1]), p[2]);
  }
  s.loss = ir::add(g, ir::mean(g, ir::mul(g, y, y)), ir::mean(g, ir::mul(g, p[3], p[3])));
  const std::vector<ValueId> grads = autograd::gradients(g, s.loss, p);
  ir::NoGradGuard no_grad;
  ValueId total = ir::kNoValue;
  for (ValueId gr : grads) {
    g.mark_gradient(gr);
    const ValueId sq = ir::sum(g, ir::mul(g, gr, gr));
    total = total == ir::kNoValue ? sq : ir::add(g, total, sq);
  }
  const ValueId coef = ir::minimum(
      g,
      ir::mul_scalar(g, ir::pow_scalar(g, ir::add_scalar(g, ir::sqrt(g, total), 1e-6), -1), 0.05),
      ir::full(g, {}, DType::F32, 1.0));
  s.lr = g.input({{}, DType::F32}, "lr");
  s.b1 = g.input({{}, DType::F32}, "bias1");
  s.b2 = g.input({{}, DType::F32}, "bias2");
  s.outputs.push_back(s.loss);
  for (size_t i = 0; i < p.size(); ++i) {
    const ValueId clipped = ir::mul(g, grads[i], coef);
    const std::vector<ValueId> next =
        ir::adamw_update(g, p[i], clipped, m[i], v[i], s.lr, s.b1, s.b2, 0.9, 0.999, 1e-8, 0.01);
    s.outputs.insert(s.outputs.end(), {next[0], next[1], next[2], clipped});
  }
  return s;
}

float value_at(int r, int i) {
  return static_cast<float>(std::sin(0.37 * (r * 31 + i)) * 0.8);
}

std::vector<float> batch_rows(int first_rank, int ranks) {
  std::vector<float> x;
  for (int r = first_rank; r < first_rank + ranks; ++r)
    for (int i = 0; i < kRows * 12; ++i) x.push_back(value_at(r, i));
  return x;
}

std::vector<float> initial(size_t i) {
  std::vector<float> p(static_cast<size_t>(kParams[i].numel()));
  for (size_t k = 0; k < p.size(); ++k)
    p[k] = 0.3f * value_at(100 + static_cast<int>(i), static_cast<int>(k));
  return p;
}

// Runs one step of `plan` on the global batch x and returns the outputs: the loss,
// then p', m', v', clipped gradient per parameter, each whole or this rank's block.
// `prefetch`: compiled as for an overlapping communicator (ZeRO-3 gathers one block ahead)
// and run on MPI, which finishes each collective in order.
std::vector<HostTensor> run_step(const compile::PlanSpec& plan, int step,
                                 const std::vector<HostTensor>* state, const std::vector<float>& x,
                                 comm::Communicator* comm, bool prefetch = false) {
  const Step s = build_step(static_cast<int>(x.size()) / 12, state);
  const compile::Program program =
      compile::compile(s.g, s.outputs, {}, plan, {.async_collectives = prefetch});
  if (prefetch && state) {
    int moved = 0;
    for (ir::NodeId n = 0; n < program.graph->num_nodes(); ++n)
      moved += program.graph->node(n).op == OpKind::AllGather &&
               program.graph->node(n).attrs.i_or(ir::kOverlapAttr, 0) != 0;
    EXPECT_GT(moved, 0) << "no gather was prefetched";
  }
  // The step has the global batch's shapes; a data-parallel rank's program reads its rows.
  const int64_t row_shards =
      program.graph->producer(program.local(s.x)).attrs.i_or(compile::kRowShardsAttr, 1);
  EXPECT_EQ(row_shards, plan.dp);
  const size_t rows = x.size() / static_cast<size_t>(row_shards);
  const size_t first = comm ? static_cast<size_t>(comm->rank()) * rows : 0;
  const std::vector<float> x_here(x.begin() + static_cast<std::ptrdiff_t>(first),
                                  x.begin() + static_cast<std::ptrdiff_t>(first + rows));
  auto backend = make_backend("cpu");
  std::vector<std::unique_ptr<Storage>> storage;
  std::unordered_map<ValueId, const void*> bound;
  auto bind = [&](ValueId v, const std::vector<float>& values) {
    storage.push_back(std::make_unique<Storage>(*backend, values.size() * sizeof(float)));
    backend->copy_from_host(storage.back()->data(), values.data(), storage.back()->bytes());
    bound[program.local(v)] = storage.back()->data();
  };
  bind(s.x, x_here);
  bind(s.lr, {1e-2f});
  bind(s.b1, {static_cast<float>(1 / (1 - std::pow(0.9, step)))});
  bind(s.b2, {static_cast<float>(1 / (1 - std::pow(0.999, step)))});
  for (size_t i = 0; i < kParams.size(); ++i) {
    if (!state) {
      bind(s.inputs[i], initial(i));
      continue;
    }
    for (size_t k = 0; k < 3; ++k) bind(s.inputs[3 * i + k], (*state)[3 * i + k].values);
  }
  runtime::Executor exec(*backend, nullptr, comm);
  const runtime::RunResult r = exec.run(*program.graph, program.memory, bound);
  EXPECT_EQ(r.peak_bytes, program.memory.peak_bytes()) << plan.str() << " step " << step;
  std::vector<HostTensor> out;
  for (ValueId v : s.outputs) {
    const ValueId local = program.local(v);
    const size_t k = static_cast<size_t>(
        std::find(program.memory.outputs.begin(), program.memory.outputs.end(), local) -
        program.memory.outputs.begin());
    HostTensor t;
    t.values.resize(r.outputs[k]->bytes() / sizeof(float));
    t.shards = program.shards_of(local);
    backend->copy_to_host(t.values.data(), r.outputs[k]->data(), r.outputs[k]->bytes());
    out.push_back(std::move(t));
  }
  return out;
}

// Drops the loss: what the next step takes as p, m, v per parameter.
std::vector<HostTensor> state_of(const std::vector<HostTensor>& outputs) {
  std::vector<HostTensor> state;
  for (size_t i = 0; i < kParams.size(); ++i)
    for (size_t k = 0; k < 3; ++k) state.push_back(outputs[1 + 4 * i + k]);
  return state;
}

class Zero : public ::testing::TestWithParam<int> {};

TEST_P(Zero, TwoStepsMatchOneRankOnTheWholeBatch) {
  const int R = world->size(), r = world->rank();
  const bool prefetch = GetParam() == 4;  // ZeRO-3 with its gathers prefetched
  const int zero = prefetch ? 3 : GetParam();
  const compile::PlanSpec one{};
  const auto ref1 = run_step(one, 1, nullptr, batch_rows(0, R), nullptr);
  const std::vector<HostTensor> ref_state = state_of(ref1);
  const auto ref2 = run_step(one, 2, &ref_state, batch_rows(0, R), nullptr);
  const compile::PlanSpec plan{.dp = R, .zero = zero};
  const auto got1 = run_step(plan, 1, nullptr, batch_rows(0, R), world, prefetch);
  const std::vector<HostTensor> state = state_of(got1);
  const auto got2 = run_step(plan, 2, &state, batch_rows(0, R), world, prefetch);
  size_t blocks = 0;
  for (const auto& [got, ref] : {std::pair{&got1, &ref1}, std::pair{&got2, &ref2}}) {
    ASSERT_EQ(got->size(), ref->size());
    for (size_t o = 0; o < got->size(); ++o) {
      const HostTensor& g = (*got)[o];
      const std::vector<float>& want = (*ref)[o].values;
      const size_t n = g.values.size(), first = g.shards > 1 ? static_cast<size_t>(r) * n : 0;
      ASSERT_EQ(n * static_cast<size_t>(g.shards), want.size()) << "output " << o;
      blocks += g.shards > 1;
      for (size_t k = 0; k < n; ++k)
        ASSERT_NEAR(g.values[k], want[first + k], 1e-5 + 1e-4 * std::fabs(want[first + k]))
            << "zero " << zero << " output " << o << " element " << first + k;
    }
  }
  // Which outputs stay blocks: states from zero 1, gradients from 2, parameters at 3 (the
  // divisible ones); none without ZeRO.
  if (zero == 0) {
    EXPECT_EQ(blocks, 0u);
  } else {
    EXPECT_GT(got2[2].shards, 1) << "w1's m";
    EXPECT_EQ(got2[1].shards, zero == 3 ? R : 1) << "w1";
    EXPECT_EQ(got2[4].shards, zero >= 2 ? R : 1) << "w1's gradient";
    EXPECT_EQ(got2[1 + 4 * 3].shards, 1) << "c [5] stays whole";
  }
}

INSTANTIATE_TEST_SUITE_P(Stages, Zero, ::testing::Values(0, 1, 2, 3, /*3, prefetched*/ 4));

}  // namespace
}  // namespace solo

int main(int argc, char** argv) {
  return solo::test::main_on_every_rank(argc, argv, "mpi_test_zero", solo::world);
}
