// Overlap of collectives with compute: with an asynchronous communicator the executor starts
// each AllReduce and waits for it only before the next one or before its first consumer, and
// the memory plan keeps the collective's inputs live until then. The communicator here
// performs a started all-reduce only when waited for, as if it had run on another stream:
// a consumer that did not wait, or an input whose buffer was reused early, gives wrong values.
#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/core/error.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"
#include "test_support.h"

namespace solo::runtime {
namespace {

using ir::Graph;
using ir::ValueId;

// Rank 0 of `ranks` identical ranks, on host f32 buffers: a sum is ranks * x, a mean is x.
class DeferredCommunicator final : public test::SingleProcessCommunicator {
 public:
  explicit DeferredCommunicator(int ranks) : ranks_(ranks) {}
  int rank() const override { return 0; }
  int size() const override { return ranks_; }
  const char* name() const override { return "deferred"; }
  bool asynchronous() const override { return true; }

  void all_reduce_sum(void* data, size_t count, DType dtype) override {
    all_reduce(data, data, count, dtype, false);
  }
  void all_reduce(const void* send, void* recv, size_t count, DType dtype, bool average) override {
    SOLO_CHECK(dtype == DType::F32, "deferred communicator: f32 only");
    reduce({static_cast<const float*>(send), static_cast<float*>(recv), count, average});
  }
  size_t start_all_reduce(const void* send, void* recv, size_t count, DType dtype,
                          bool average) override {
    SOLO_CHECK(dtype == DType::F32, "deferred communicator: f32 only");
    return start({static_cast<const float*>(send), static_cast<float*>(recv), count, average});
  }
  size_t start_all_reduce_group(std::span<const comm::ReduceBuffer> buffers,
                                bool average) override {
    ++groups;
    return Communicator::start_all_reduce_group(buffers, average);
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    SOLO_CHECK(dtype == DType::F32, "deferred communicator: f32 only");
    gather({static_cast<const float*>(send), static_cast<float*>(recv), count, false, true});
  }
  size_t start_all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    SOLO_CHECK(dtype == DType::F32, "deferred communicator: f32 only");
    return start({static_cast<const float*>(send), static_cast<float*>(recv), count, false, true});
  }
  // Performs the started collectives up to the ticket's, in order.
  void wait_for(size_t ticket) override {
    bool any = false;
    while (!started_.empty() && started_.front().first <= ticket) {
      perform(started_.front().second);
      started_.erase(started_.begin());
      any = true;
    }
    waits += any;
  }
  void wait_started() override {
    if (!started_.empty()) wait_for(started_.back().first);
  }
  int starts = 0, waits = 0, groups = 0;

 private:
  struct Request {
    const float* send;
    float* recv;
    size_t count;
    bool average;
    bool gathers = false;
  };
  size_t start(const Request& r) {
    started_.emplace_back(++tickets_, r);
    ++starts;
    return tickets_;
  }
  void perform(const Request& r) { r.gathers ? gather(r) : reduce(r); }
  void reduce(const Request& r) {
    const float factor = r.average ? 1.0f : static_cast<float>(ranks_);
    for (size_t i = 0; i < r.count; ++i) r.recv[i] = r.send[i] * factor;
  }
  // Every rank holds the same block: it lands at each rank's place.
  void gather(const Request& r) {
    for (int k = 0; k < ranks_; ++k)
      for (size_t i = 0; i < r.count; ++i) r.recv[static_cast<size_t>(k) * r.count + i] = r.send[i];
  }
  int ranks_;
  size_t tickets_ = 0;
  std::vector<std::pair<size_t, Request>> started_;
};

// Two gradient buckets reduced (sums over 2 ranks) while unrelated nodes compute, then used:
//   a = 3x, r = allreduce(a) = 6x; c = (x + 1) * 2; s = allreduce(c + 5) = 2(2x + 7);
//   out = r + s + c = 6x + 4x + 14 + 2x + 2 = 12x + 16.
struct Buckets {
  Graph g;
  ValueId x, a, r, s, out;
  int64_t n;
  explicit Buckets(int64_t n_) : n(n_) {
    x = g.input({{n}, DType::F32}, "x");
    a = ir::mul_scalar(g, x, 3.0);
    r = ir::all_reduce(g, a, /*average=*/false, 0, /*overlap=*/true);
    const ValueId c = ir::mul_scalar(g, ir::add_scalar(g, x, 1.0), 2.0);
    s = ir::all_reduce(g, ir::add_scalar(g, c, 5.0), false, 0, true);
    out = ir::add(g, ir::add(g, r, s), c);
  }
};

int step_of(const MemoryPlan& p, const Graph& g, ValueId v) {
  for (size_t t = 0; t < p.schedule.size(); ++t)
    if (p.schedule[t] == g.value(v).producer) return static_cast<int>(t);
  return -1;
}

// Runs a graph of one f32 input x on the cpu backend with `comm` and counts the elements of
// its first output that differ from want(x).
template <class Want>
size_t wrong_elements(const Graph& g, const MemoryPlan& plan, ValueId x, comm::Communicator& comm,
                      const std::vector<float>& xs, Want want) {
  auto backend = make_backend("cpu");
  Storage xd(*backend, xs.size() * sizeof(float));
  backend->copy_from_host(xd.data(), xs.data(), xd.bytes());
  const RunResult res = Executor(*backend, nullptr, &comm).run(g, plan, {{x, xd.data()}});
  std::vector<float> got(xs.size());
  backend->copy_to_host(got.data(), res.outputs[0]->data(), xd.bytes());
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != want(xs[i]);
  return wrong;
}

std::vector<float> ramp(size_t n, int period) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(static_cast<int>(i) % period - period / 2);
  return v;
}

TEST(Overlap, PlanWaitsBeforeTheNextCollectiveAndKeepsInputsLive) {
  Buckets b(1000);
  const MemoryPlan sync = plan_memory(b.g, {b.out});
  const MemoryPlan async = plan_memory(b.g, {b.out}, {}, /*async_collectives=*/true);
  check_memory_plan(b.g, async);
  EXPECT_FALSE(sync.async_collectives);
  ASSERT_TRUE(async.async_collectives);
  const int first = step_of(async, b.g, b.r), second = step_of(async, b.g, b.s);
  int waits = 0;
  for (size_t t = 0; t < async.wait_before.size(); ++t)
    waits += static_cast<int>(async.wait_before[t].size());
  EXPECT_EQ(waits, 2);  // before the second all-reduce, and before the first reads of s
  EXPECT_FALSE(async.wait_before[static_cast<size_t>(second)].empty());
  // a's bytes are read by the first collective until that wait, not just at its start.
  EXPECT_EQ(sync.last_use[static_cast<size_t>(b.a)], first);
  EXPECT_EQ(async.last_use[static_cast<size_t>(b.a)], second);
}

TEST(Overlap, ResultsMatchTheClosedFormWithDeferredCollectives) {
  const int64_t n = 1 << 14;  // large enough that early reuse would land on a's buffer
  Buckets b(n);
  auto backend = make_backend("cpu");
  std::vector<float> xs(static_cast<size_t>(n));
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(i % 101) - 50.0f;
  Storage x(*backend, xs.size() * 4);
  backend->copy_from_host(x.data(), xs.data(), x.bytes());
  for (bool async : {false, true}) {
    SCOPED_TRACE(async ? "overlapped" : "synchronous");
    DeferredCommunicator comm(2);
    Executor exec(*backend, nullptr, &comm);
    const MemoryPlan plan = plan_memory(b.g, {b.out}, {}, async);
    const RunResult r = exec.run(b.g, plan, {{b.x, x.data()}});
    std::vector<float> got(xs.size());
    backend->copy_to_host(got.data(), r.outputs[0]->data(), x.bytes());
    size_t wrong = 0;
    for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != 12.0f * xs[i] + 16.0f;
    EXPECT_EQ(wrong, 0u);
    EXPECT_EQ(comm.starts, async ? 2 : 0);
    EXPECT_EQ(comm.waits, async ? 2 : 0);
  }
}

TEST(Overlap, ExecutorPlansForItsCommunicator) {
  // Executor::run(graph, outputs, inputs) makes the plan itself: overlapped for an
  // asynchronous communicator.
  Buckets b(64);
  auto backend = make_backend("reference");
  std::vector<float> xs(64, 1.0f);
  Storage x(*backend, 256);
  backend->copy_from_host(x.data(), xs.data(), 256);
  DeferredCommunicator comm(2);
  const RunResult r = Executor(*backend, nullptr, &comm).run(b.g, {b.out}, {{b.x, x.data()}});
  std::vector<float> got(64);
  backend->copy_to_host(got.data(), r.outputs[0]->data(), 256);
  EXPECT_EQ(got, std::vector<float>(64, 28.0f));
  EXPECT_EQ(comm.starts, 2);
}

// Gradient buckets are appended after the whole backward graph; an overlapped plan starts
// each one as soon as its inputs exist:
//   a = 3x; r = allreduce(a) = 6x (appended last); chain: c = ((x + 1) * 2 + 5) * 2;
//   out = r + c = 6x + 4x + 14 = 10x + 14.
TEST(Overlap, CollectivesStartAsSoonAsTheirInputsExist) {
  Graph g;
  const ValueId x = g.input({{4096}, DType::F32}, "x");
  const ValueId a = ir::mul_scalar(g, x, 3.0);
  const ValueId c = ir::mul_scalar(
      g, ir::add_scalar(g, ir::mul_scalar(g, ir::add_scalar(g, x, 1.0), 2.0), 5.0), 2.0);
  const ValueId r = ir::all_reduce(g, a, /*average=*/false, 0, /*overlap=*/true);
  const ValueId out = ir::add(g, r, c);
  const MemoryPlan sync = plan_memory(g, {out});
  const MemoryPlan async = plan_memory(g, {out}, {}, /*async_collectives=*/true);
  check_memory_plan(g, async);
  EXPECT_EQ(step_of(sync, g, r), step_of(sync, g, c) + 1);    // node order
  EXPECT_EQ(step_of(async, g, r), step_of(async, g, a) + 1);  // right after its input
  EXPECT_FALSE(async.wait_before[static_cast<size_t>(step_of(async, g, out))].empty());

  DeferredCommunicator comm(2);
  EXPECT_EQ(
      wrong_elements(g, async, x, comm, ramp(4096, 37), [](float v) { return 10.0f * v + 14.0f; }),
      0u);
}

// An output of a started collective that nothing reads is still written until the wait, so
// its bytes must not be handed to compute in between:
//   [r0, r1] = allreduce(3x, 2x); c = 5x; d = c + 1; out = r0 + d + x = 12x + 1.
TEST(Overlap, UnreadOutputsStayLiveUntilTheWait) {
  const int64_t n = 1 << 14;
  Graph g;
  const ValueId x = g.input({{n}, DType::F32}, "x");
  const std::vector<ValueId> r =
      ir::all_reduce(g, {ir::mul_scalar(g, x, 3.0), ir::mul_scalar(g, x, 2.0)}, false, 0, true);
  const ValueId c = ir::mul_scalar(g, x, 5.0);
  const ValueId d = ir::add_scalar(g, c, 1.0);
  const ValueId out = ir::add(g, ir::add(g, r[0], d), x);
  const MemoryPlan plan = plan_memory(g, {out}, {}, /*async_collectives=*/true);
  check_memory_plan(g, plan);
  const int wait = step_of(plan, g, out) - 1;  // before the first read of r0
  ASSERT_FALSE(plan.wait_before[static_cast<size_t>(wait)].empty());
  EXPECT_GE(plan.last_use[static_cast<size_t>(r[1])], wait);

  DeferredCommunicator comm(2);
  EXPECT_EQ(wrong_elements(g, plan, x, comm, ramp(static_cast<size_t>(n), 53),
                           [](float v) { return 12.0f * v + 1.0f; }),
            0u);
  EXPECT_EQ(comm.groups, 1);  // the two tensors went as one group
  EXPECT_EQ(comm.starts, 2);
}

// A prefetched gather (marked to overlap) starts where its pass put it, not as early as its
// input allows, and is waited for right before its reader; the deferred communicator gathers
// only then, so a reader that did not wait, or compute written into the gather's buffer
// meanwhile, gives wrong values. Two identical ranks:
//   c = 3y; g = allgather(x) = [x, x]; d = c + 1; out = g + d = [x, x] + 3y + 1.
TEST(Overlap, AStartedGatherStaysInPlaceAndIsWaitedForBeforeItsReader) {
  const int64_t n = 1 << 13;
  Graph g;
  const ValueId x = g.input({{n}, DType::F32}, "x");
  const ValueId y = g.input({{2 * n}, DType::F32}, "y");
  const ValueId c = ir::mul_scalar(g, y, 3.0);
  const ValueId gathered = ir::all_gather(g, x, 2, 0, 0, /*overlap=*/true);
  const ValueId d = ir::add_scalar(g, c, 1.0);
  const ValueId out = ir::add(g, gathered, d);
  const MemoryPlan plan = plan_memory(g, {out}, {}, /*async_collectives=*/true);
  check_memory_plan(g, plan);
  const int start = step_of(plan, g, gathered);
  EXPECT_GT(start, step_of(plan, g, c));
  const std::vector<int>& waits = plan.wait_before[static_cast<size_t>(step_of(plan, g, out))];
  EXPECT_EQ(waits, std::vector<int>{start});
  auto backend = make_backend("cpu");
  const std::vector<float> xs = ramp(static_cast<size_t>(n), 29), ys = ramp(2 * n, 31);
  Storage xd(*backend, xs.size() * 4), yd(*backend, ys.size() * 4);
  backend->copy_from_host(xd.data(), xs.data(), xd.bytes());
  backend->copy_from_host(yd.data(), ys.data(), yd.bytes());
  DeferredCommunicator comm(2);
  const RunResult r =
      Executor(*backend, nullptr, &comm).run(g, plan, {{x, xd.data()}, {y, yd.data()}});
  std::vector<float> got(ys.size());
  backend->copy_to_host(got.data(), r.outputs[0]->data(), yd.bytes());
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    wrong += got[i] != xs[i % xs.size()] + 3.0f * ys[i] + 1.0f;
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(comm.starts, 1);
  EXPECT_EQ(comm.waits, 1);
}

// A kernel that fails after a collective started still leaves later work ordered after the
// collective: the executor waits before the error leaves it (the buffers are freed then).
TEST(Overlap, AnErrorAfterAStartStillWaitsForIt) {
  Graph g;
  const ValueId x = g.input({{8, 4}, DType::F32}, "x");
  const ValueId ids = g.input({{2}, DType::I64}, "ids");
  const ValueId r = ir::all_reduce(g, ir::mul_scalar(g, x, 3.0), false, 0, true);
  const ValueId e = ir::embedding(g, x, ids);  // id 99 is out of range: the kernel throws
  const ValueId out = ir::add(g, ir::sum(g, r), ir::sum(g, e));
  const MemoryPlan plan = plan_memory(g, {out}, {}, /*async_collectives=*/true);
  ASSERT_LT(step_of(plan, g, r), step_of(plan, g, e));
  auto backend = make_backend("cpu");
  std::vector<float> xs(32, 1.0f);
  std::vector<int64_t> bad_ids{1, 99};
  Storage xd(*backend, 128), id(*backend, 16);
  backend->copy_from_host(xd.data(), xs.data(), 128);
  backend->copy_from_host(id.data(), bad_ids.data(), 16);
  DeferredCommunicator comm(2);
  EXPECT_THROW(Executor(*backend, nullptr, &comm).run(g, plan, {{x, xd.data()}, {ids, id.data()}}),
               Error);
  EXPECT_EQ(comm.starts, 1);
  EXPECT_EQ(comm.waits, 1);
}

}  // namespace
}  // namespace solo::runtime
