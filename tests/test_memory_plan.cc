// Static memory plan and executor: buffers are reused once dead, never overlap while live,
// and the executor's measured peak equals the plan's computed peak.
#include <gtest/gtest.h>

#include <numeric>

#include "solo/backend/backend.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"

namespace solo::runtime {
namespace {

using ir::Graph;
using ir::ValueId;

// A chain x -> x+x -> ... of n steps over [rows, cols] plus a reshape view and a side branch.
struct Chain {
  Graph g;
  ValueId x, out;
};
Chain make_chain(int n, int64_t rows, int64_t cols) {
  Chain c;
  c.x = c.g.input({{rows, cols}, DType::F32}, "x");
  ValueId v = c.x;
  for (int i = 0; i < n; ++i) v = ir::add(c.g, v, c.x);
  v = ir::reshape(c.g, v, {rows * cols});
  c.out = ir::sum(c.g, ir::mul(c.g, v, v));
  return c;
}

TEST(MemoryPlan, ReusesDeadBuffersAndNeverOverlapsLiveOnes) {
  Chain c = make_chain(20, 16, 16);
  const MemoryPlan plan = plan_memory(c.g, {c.out});
  check_memory_plan(c.g, plan);
  const size_t one = 16 * 16 * 4;
  size_t total = 0;
  for (int v = 0; v < c.g.num_values(); ++v)
    if (plan.placement[static_cast<size_t>(v)] == Placement::Arena) total += c.g.type(v).bytes();
  EXPECT_GE(total, 20 * one);
  EXPECT_LE(plan.arena_bytes, 3 * one);  // a chain needs only ~2 live buffers at a time
  EXPECT_GE(plan.arena_bytes, plan.live_peak_bytes);
  EXPECT_EQ(plan.output_bytes, 4u);
}

TEST(MemoryPlan, SkipsNodesTheOutputsDoNotNeed) {
  Graph g;
  const ValueId x = g.input({{8}, DType::F32}, "x");
  const ValueId used = ir::add(g, x, x);
  const ValueId unused = ir::mul(g, x, x);
  const MemoryPlan plan = plan_memory(g, {used});
  EXPECT_EQ(plan.placement[static_cast<size_t>(unused)], Placement::None);
  EXPECT_EQ(plan.schedule.size(), 2u);
}

TEST(MemoryPlan, ViewKeepsItsRootAlive) {
  Graph g;
  const ValueId x = g.input({{4, 4}, DType::F32}, "x");
  const ValueId a = ir::add(g, x, x);
  const ValueId view = ir::reshape(g, a, {16});
  ValueId v = ir::add(g, x, x);
  for (int i = 0; i < 5; ++i) v = ir::add(g, v, x);
  const ValueId out = ir::add(g, ir::reshape(g, v, {16}), view);
  const MemoryPlan plan = plan_memory(g, {out});
  check_memory_plan(g, plan);
  EXPECT_EQ(plan.root[static_cast<size_t>(view)], a);
  EXPECT_GE(plan.last_use[static_cast<size_t>(a)], plan.first_use[static_cast<size_t>(out)]);
}

class ExecutorPeak : public ::testing::TestWithParam<const char*> {};

TEST_P(ExecutorPeak, MeasuredPeakEqualsPlannedPeak) {
  auto backend = make_backend(GetParam());
  Chain c = make_chain(12, 32, 8);
  const MemoryPlan plan = plan_memory(c.g, {c.out});
  Storage x(*backend, c.g.type(c.x).bytes());
  if (backend->holds_data()) {
    std::vector<float> ones(32 * 8, 1.0f);
    backend->copy_from_host(x.data(), ones.data(), ones.size() * 4);
  }
  Executor exec(*backend);
  const size_t before = backend->bytes_in_use();
  RunResult r = exec.run(c.g, plan, {{c.x, x.data()}});
  EXPECT_EQ(r.peak_bytes, plan.peak_bytes());
  EXPECT_EQ(backend->bytes_in_use(), before + plan.output_bytes);  // arena returned
  if (backend->holds_data()) {
    float y = 0;
    backend->copy_to_host(&y, r.outputs[0]->data(), 4);
    EXPECT_FLOAT_EQ(y, 13.0f * 13.0f * 256.0f);  // each element 13, squared, summed
  }
}

// Half operands run on f32 copies (HostBackend::run); the copies are scratch, not tensors of
// the plan, so they must not show in the measured peak. [512, 512] bf16 values widen to
// 1 MiB blocks, which go through the backend's block cache.
TEST_P(ExecutorPeak, WidenedHalfOperandsAreNotAccounted) {
  auto backend = make_backend(GetParam());
  Graph g;
  const int64_t n = 512;
  const ValueId x = g.input({{n, n}, DType::BF16}, "x");
  const ValueId y = ir::add(g, ir::matmul(g, x, x, false, true), x);
  const ValueId out = ir::sum(g, ir::cast(g, ir::mul(g, y, y), DType::F32));
  const MemoryPlan plan = plan_memory(g, {out});
  Storage xs(*backend, g.type(x).bytes());
  if (backend->holds_data()) {
    const std::vector<uint16_t> zeros(static_cast<size_t>(n * n), 0);
    backend->copy_from_host(xs.data(), zeros.data(), zeros.size() * 2);
  }
  Executor exec(*backend);
  for (int run = 0; run < 2; ++run) {  // the second run takes its blocks from the cache
    const size_t before = backend->bytes_in_use();
    RunResult r = exec.run(g, plan, {{x, xs.data()}});
    EXPECT_EQ(r.peak_bytes, plan.peak_bytes());
    EXPECT_EQ(backend->bytes_in_use(), before + plan.output_bytes);
  }
}

// ---- donated inputs ----------------------------------------------------------------------

// One AdamW update of a 4-element parameter: the graph an optimizer step flushes.
struct AdamWStep {
  Graph g;
  ValueId p, grad, m, v, lr, b1, b2;
  std::vector<ValueId> next;  // p', m', v'
};
AdamWStep make_adamw_step() {
  AdamWStep s;
  const ir::TensorType vec{Shape({4}), DType::F32}, one{Shape({}), DType::F32};
  s.p = s.g.input(vec, "p");
  s.grad = s.g.input(vec, "grad");
  s.m = s.g.input(vec, "m");
  s.v = s.g.input(vec, "v");
  s.lr = s.g.input(one, "lr");
  s.b1 = s.g.input(one, "bias1");
  s.b2 = s.g.input(one, "bias2");
  s.next = ir::adamw_update(s.g, s.p, s.grad, s.m, s.v, s.lr, s.b1, s.b2, 0.9, 0.999, 1e-8, 0.1);
  return s;
}

TEST(MemoryPlan, OptimizerUpdatesDonatedInputsInPlace) {
  AdamWStep s = make_adamw_step();
  const MemoryPlan plan = plan_memory(s.g, s.next, {s.p, s.m, s.v, s.grad});
  const ValueId expected_donor[] = {s.p, s.m, s.v};
  for (int k = 0; k < 3; ++k) {
    const auto o = static_cast<size_t>(s.next[static_cast<size_t>(k)]);
    EXPECT_EQ(plan.placement[o], Placement::Donated) << k;
    EXPECT_EQ(plan.donor[o], expected_donor[k]) << k;  // never the gradient, read elsewhere
  }
  EXPECT_EQ(plan.output_bytes, 0u);
  // Without donations every output needs storage of its own.
  EXPECT_EQ(plan_memory(s.g, s.next).output_bytes, 3 * 16u);
}

TEST(MemoryPlan, DeadInputIsReusedButLiveOneIsNot) {
  Graph g;
  const ValueId x = g.input({{8}, DType::F32}, "x");
  const ValueId y = g.input({{8}, DType::F32}, "y");
  const ValueId a = ir::mul_scalar(g, x, 2.0);  // last read of x
  const ValueId b = ir::add(g, a, y);           // output; y is read here, by an op that
  const ValueId c = ir::mul(g, b, y);           // has no in-place rule, and again later
  const MemoryPlan plan = plan_memory(g, {b, c}, {x, y});
  EXPECT_EQ(plan.placement[static_cast<size_t>(b)], Placement::Donated);
  EXPECT_EQ(plan.donor[static_cast<size_t>(b)], x);
  EXPECT_EQ(plan.placement[static_cast<size_t>(c)], Placement::Output);  // y is read by c
  EXPECT_EQ(plan.output_bytes, 32u);
  // A donated input that is itself requested keeps its buffer (it is copied out).
  const MemoryPlan kept = plan_memory(g, {b, x}, {x});
  EXPECT_EQ(kept.placement[static_cast<size_t>(b)], Placement::Output);
  EXPECT_THROW(plan_memory(g, {b}, {a}), Error);  // only graph inputs can be donated
}

TEST_P(ExecutorPeak, DonatedOutputsReuseTheInputStorage) {
  auto backend = make_backend(GetParam());
  AdamWStep s = make_adamw_step();
  const std::vector<float> p = {1, -2, 3, -4}, grad = {0.5f, 0.25f, -1, 2}, m = {0.1f, 0, 0, -0.1f},
                           v = {0.01f, 0.02f, 0, 0.5f}, lr = {0.01f}, b1 = {10}, b2 = {1000};
  const std::vector<std::pair<ValueId, const std::vector<float>*>> values = {
      {s.p, &p}, {s.grad, &grad}, {s.m, &m}, {s.v, &v}, {s.lr, &lr}, {s.b1, &b1}, {s.b2, &b2}};
  // Two copies of every input: one donated, one kept, to compare the two plans' results.
  std::unordered_map<ValueId, std::shared_ptr<Storage>> donated, kept;
  std::unordered_map<ValueId, const void*> donated_in, kept_in;
  for (const auto& [id, host] : values) {
    for (auto* side : {&donated, &kept}) {
      auto st = std::make_shared<Storage>(*backend, host->size() * 4);
      if (backend->holds_data()) backend->copy_from_host(st->data(), host->data(), st->bytes());
      (*side)[id] = st;
    }
    donated_in[id] = donated[id]->data();
    kept_in[id] = kept[id]->data();
  }
  const MemoryPlan with = plan_memory(s.g, s.next, {s.p, s.m, s.v});
  const MemoryPlan without = plan_memory(s.g, s.next);
  Executor exec(*backend);
  std::unordered_map<ValueId, std::shared_ptr<Storage>> given = {
      {s.p, donated[s.p]}, {s.m, donated[s.m]}, {s.v, donated[s.v]}};
  const size_t before = backend->bytes_in_use();
  RunResult r = exec.run(s.g, with, donated_in, given);
  EXPECT_EQ(r.peak_bytes, with.peak_bytes());
  EXPECT_EQ(backend->bytes_in_use(), before);  // no new storage: the outputs are the inputs'
  EXPECT_EQ(r.outputs[0].get(), donated[s.p].get());
  EXPECT_EQ(r.outputs[1].get(), donated[s.m].get());
  EXPECT_EQ(r.outputs[2].get(), donated[s.v].get());
  RunResult ref = exec.run(s.g, without, kept_in);
  if (backend->holds_data())
    for (int k = 0; k < 3; ++k) {
      std::vector<float> got(4), want(4);
      backend->copy_to_host(got.data(), r.outputs[static_cast<size_t>(k)]->data(), 16);
      backend->copy_to_host(want.data(), ref.outputs[static_cast<size_t>(k)]->data(), 16);
      EXPECT_EQ(got, want) << "output " << k;
    }
  // A plan that donates needs the storage handed over with the data.
  EXPECT_THROW(exec.run(s.g, with, donated_in), Error);
}

INSTANTIATE_TEST_SUITE_P(Backends, ExecutorPeak, ::testing::Values("reference", "cpu", "meta"));

TEST(Executor, MissingInputIsNamed) {
  auto backend = make_backend("reference");
  Graph g;
  const ValueId x = g.input({{2}, DType::F32}, "input_ids");
  const ValueId y = ir::add(g, x, x);
  Executor exec(*backend);
  try {
    exec.run(g, {y}, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input_ids"), std::string::npos) << e.what();
  }
  EXPECT_EQ(backend->bytes_in_use(), 0u);  // nothing leaked on the error path
}

TEST(Executor, RequestedViewAndInputAreCopiedOut) {
  auto backend = make_backend("reference");
  Graph g;
  const ValueId x = g.input({{2, 2}, DType::F32}, "x");
  const ValueId view = ir::reshape(g, ir::add(g, x, x), {4});
  std::vector<float> data = {1, 2, 3, 4};
  Storage xs(*backend, 16);
  backend->copy_from_host(xs.data(), data.data(), 16);
  Executor exec(*backend);
  RunResult r = exec.run(g, {view, x}, {{x, xs.data()}});
  std::vector<float> got(4), got_x(4);
  backend->copy_to_host(got.data(), r.outputs[0]->data(), 16);
  backend->copy_to_host(got_x.data(), r.outputs[1]->data(), 16);
  EXPECT_EQ(got, std::vector<float>({2, 4, 6, 8}));
  EXPECT_EQ(got_x, data);
  EXPECT_NE(r.outputs[1]->data(), xs.data());
}

}  // namespace
}  // namespace solo::runtime
