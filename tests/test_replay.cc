// Recorded runs (CUDA graphs) replayed by the executor give the results of eager runs, also
// when inputs move between runs, and never overwrite an earlier run's outputs. The backend
// here records like a CUDA graph: calls are stored with their addresses and run at replay.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
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

// A cpu backend whose recordings are lists of calls with the addresses they were given.
class RecordingCpuBackend final : public Backend {
 public:
  RecordingCpuBackend() : cpu_(make_backend("cpu")) {}
  const char* name() const override { return "cpu-recording"; }
  bool can_record() const override { return true; }

  void run(const KernelCall& c) const override {
    if (!recording_) return cpu_->run(c);
    recording_->steps.push_back(
        {c.op, c.attrs, {c.in.begin(), c.in.end()}, {c.out.begin(), c.out.end()}, {}});
  }
  void copy(void* dst, const void* src, size_t bytes) const override {
    if (!recording_) return cpu_->copy(dst, src, bytes);
    recording_->steps.push_back({OpKind::Input, {}, {}, {}, {dst, src, bytes}});
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) const override {
    SOLO_CHECK(!recording_, "copy_from_host while recording");
    cpu_->copy_from_host(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) const override {
    SOLO_CHECK(!recording_, "copy_to_host while recording");
    cpu_->copy_to_host(dst, src, bytes);
  }
  void begin_recording() override { recording_ = std::make_unique<Calls>(*cpu_); }
  std::unique_ptr<Recording> end_recording() override { return std::move(recording_); }

 protected:
  void* raw_allocate(size_t bytes) override {
    SOLO_CHECK(!recording_, "allocation while recording");  // a CUDA graph could not do it
    return cpu_->allocate(bytes);
  }
  void raw_deallocate(void* p, size_t bytes) override { cpu_->deallocate(p, bytes); }

 private:
  struct Copy {
    void* dst = nullptr;
    const void* src = nullptr;
    size_t bytes = 0;
  };
  struct Step {
    OpKind op;  // Input marks a copy
    Attrs attrs;
    std::vector<TensorRef> in, out;
    Copy copy;
  };
  struct Calls final : Recording {
    explicit Calls(Backend& b) : backend(b) {}
    void replay() override {
      for (const Step& s : steps)
        if (s.op == OpKind::Input)
          backend.copy(s.copy.dst, s.copy.src, s.copy.bytes);
        else
          backend.run(KernelCall{s.op, s.attrs, s.in, s.out});
    }
    Backend& backend;
    std::vector<Step> steps;
  };
  std::unique_ptr<Backend> cpu_;
  mutable std::unique_ptr<Calls> recording_;
};

std::shared_ptr<Storage> upload(Backend& b, const std::vector<float>& v) {
  auto s = std::make_shared<Storage>(b, v.size() * sizeof(float));
  b.copy_from_host(s->data(), v.data(), s->bytes());
  return s;
}
std::vector<float> download(Backend& b, const Storage& s) {
  std::vector<float> v(s.bytes() / sizeof(float));
  b.copy_to_host(v.data(), s.data(), s.bytes());
  return v;
}
std::vector<float> ramp(size_t n, float scale, float offset) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(i % 97) - offset;
  return v;
}

// y = t @ w (t a batch, w a 128 KiB weight), loss = sum(y) * lr.
struct Model {
  Graph g;
  ValueId t, w, lr, y, loss;
  Model() {
    t = g.input({{4, 256}, DType::F32}, "batch");
    w = g.input({{256, 128}, DType::F32}, "weight");
    lr = g.input({{}, DType::F32}, "lr");
    y = ir::matmul(g, t, w);
    loss = ir::mul(g, ir::sum(g, y), lr);
  }
};

TEST(Replay, ReplayedRunsMatchEagerRunsAndKeepEarlierOutputs) {
  Model m;
  const MemoryPlan plan = plan_memory(m.g, {m.y, m.loss});
  RecordingCpuBackend rec;
  auto cpu = make_backend("cpu");
  Executor replaying(rec), eager(*cpu);
  ReplayState state;
  const std::vector<float> w = ramp(256 * 128, 0.01f, 0.3f);
  const auto w_rec = upload(rec, w), w_cpu = upload(*cpu, w);
  std::vector<std::shared_ptr<Storage>> batches;  // all kept alive, so each run's batch moves
  std::vector<RunResult> runs;
  std::vector<std::vector<float>> first_outputs;
  for (int step = 0; step < 5; ++step) {
    const std::vector<float> t = ramp(4 * 256, 0.02f + 0.01f * step, 0.5f);
    const std::vector<float> lr = {0.1f * static_cast<float>(step + 1)};
    batches.push_back(upload(rec, t));
    const auto lr_rec = upload(rec, lr);
    runs.push_back(replaying.run(
        m.g, plan, {{m.t, batches.back()->data()}, {m.w, w_rec->data()}, {m.lr, lr_rec->data()}},
        {}, &state));
    const auto t_cpu = upload(*cpu, t), lr_cpu = upload(*cpu, lr);
    const RunResult want =
        eager.run(m.g, plan, {{m.t, t_cpu->data()}, {m.w, w_cpu->data()}, {m.lr, lr_cpu->data()}});
    for (size_t k = 0; k < 2; ++k)
      EXPECT_EQ(download(rec, *runs.back().outputs[k]), download(*cpu, *want.outputs[k]))
          << "step " << step << " output " << k;
    if (step == 1)
      for (size_t k = 0; k < 2; ++k) first_outputs.push_back(download(rec, *runs[1].outputs[k]));
  }
  EXPECT_EQ(state.recordings, 1);
  EXPECT_EQ(state.replays, 4);  // the first run is eager, the second records
  for (size_t k = 0; k < 2; ++k)
    EXPECT_EQ(download(rec, *runs[1].outputs[k]), first_outputs[k]);  // not overwritten
}

TEST(Replay, MovedWeightIsRecordedAgainThenStaged) {
  Model m;
  const MemoryPlan plan = plan_memory(m.g, {m.loss});
  RecordingCpuBackend rec;
  Executor exec(rec);
  ReplayState state;
  const auto t = upload(rec, ramp(4 * 256, 0.03f, 0.2f));
  const auto lr = upload(rec, {0.5f});
  std::vector<std::shared_ptr<Storage>> weights;
  auto loss_with = [&](const std::vector<float>& w, bool move) {
    if (move || weights.empty()) weights.push_back(upload(rec, w));
    const RunResult r =
        exec.run(m.g, plan, {{m.t, t->data()}, {m.w, weights.back()->data()}, {m.lr, lr->data()}},
                 {}, &state);
    return download(rec, *r.outputs[0])[0];
  };
  auto cpu = make_backend("cpu");
  auto want = [&](const std::vector<float>& w) {
    const auto tc = upload(*cpu, download(rec, *t)), wc = upload(*cpu, w),
               lc = upload(*cpu, {0.5f});
    const RunResult r =
        Executor(*cpu).run(m.g, plan, {{m.t, tc->data()}, {m.w, wc->data()}, {m.lr, lc->data()}});
    return download(*cpu, *r.outputs[0])[0];
  };
  const std::vector<float> w0 = ramp(256 * 128, 0.01f, 0.3f), w1 = ramp(256 * 128, 0.02f, 0.1f);
  EXPECT_EQ(loss_with(w0, false), want(w0));  // eager
  EXPECT_EQ(loss_with(w0, false), want(w0));  // recorded, then replayed
  EXPECT_EQ(loss_with(w0, false), want(w0));  // replayed
  EXPECT_EQ(state.recordings, 1);
  EXPECT_EQ(loss_with(w1, true), want(w1));  // the weight moved: recorded again
  EXPECT_EQ(state.recordings, 2);
  EXPECT_EQ(state.replays, 3);
  for (int i = 0; i < 4; ++i) {
    const std::vector<float> w = ramp(256 * 128, 0.01f * static_cast<float>(i + 3), 0.1f);
    EXPECT_EQ(loss_with(w, true), want(w)) << i;
  }
  EXPECT_EQ(state.recordings, 2);  // a weight that moved is copied into a slot from then on
  EXPECT_EQ(state.replays, 7);
}

TEST(Replay, OptimizerStepsReplayWithStateUpdatedInPlace) {
  Graph g;
  const ir::TensorType vec{Shape({1 << 15}), DType::F32}, one{Shape({}), DType::F32};
  const ValueId p = g.input(vec, "p"), grad = g.input(vec, "grad"), m = g.input(vec, "m"),
                v = g.input(vec, "v"), lr = g.input(one, "lr"), b1 = g.input(one, "bias1"),
                b2 = g.input(one, "bias2");
  const std::vector<ValueId> next =
      ir::adamw_update(g, p, grad, m, v, lr, b1, b2, 0.9, 0.999, 1e-8, 0.01);
  const MemoryPlan plan = plan_memory(g, next, {p, m, v});
  RecordingCpuBackend rec;
  auto cpu = make_backend("cpu");
  ReplayState state;
  const size_t n = 1 << 15;
  // The same trajectory on both: p, m and v donated to each step, a new gradient per step.
  struct Side {
    Backend& b;
    std::shared_ptr<Storage> p, m, v;
  };
  Side sides[] = {{rec, upload(rec, ramp(n, 0.01f, 0.2f)), upload(rec, std::vector<float>(n)),
                   upload(rec, std::vector<float>(n))},
                  {*cpu, upload(*cpu, ramp(n, 0.01f, 0.2f)), upload(*cpu, std::vector<float>(n)),
                   upload(*cpu, std::vector<float>(n))}};
  std::vector<std::shared_ptr<Storage>> grads;
  for (int step = 1; step <= 4; ++step) {
    const std::vector<float> grad_host = ramp(n, 0.001f * static_cast<float>(step), 0.04f);
    const std::vector<float> scalars = {1e-2f,
                                        1.0f / (1.0f - static_cast<float>(std::pow(0.9, step))),
                                        1.0f / (1.0f - static_cast<float>(std::pow(0.999, step)))};
    for (Side& s : sides) {
      // Each step's gradient is new storage somewhere else (kept, so no address repeats).
      grads.push_back(upload(s.b, grad_host));
      const auto& gs = grads.back();
      const auto lrs = upload(s.b, {scalars[0]}), b1s = upload(s.b, {scalars[1]}),
                 b2s = upload(s.b, {scalars[2]});
      const std::unordered_map<ValueId, const void*> in = {
          {p, s.p->data()},  {grad, gs->data()}, {m, s.m->data()}, {v, s.v->data()},
          {lr, lrs->data()}, {b1, b1s->data()},  {b2, b2s->data()}};
      const void* before = s.p->data();
      RunResult r = Executor(s.b).run(g, plan, in, {{p, s.p}, {m, s.m}, {v, s.v}},
                                      &s.b == &rec ? &state : nullptr);
      s.p = r.outputs[0];
      s.m = r.outputs[1];
      s.v = r.outputs[2];
      EXPECT_EQ(s.p->data(), before);  // updated in place
    }
    for (int k = 0; k < 3; ++k) {
      const Storage& got = *(k == 0 ? sides[0].p : k == 1 ? sides[0].m : sides[0].v);
      const Storage& want = *(k == 0 ? sides[1].p : k == 1 ? sides[1].m : sides[1].v);
      EXPECT_EQ(download(rec, got), download(*cpu, want)) << "step " << step << " output " << k;
    }
  }
  EXPECT_EQ(state.recordings, 1);
  EXPECT_EQ(state.replays, 3);
}

TEST(Replay, DonatedInputsThatKeepMovingRunEagerly) {
  // A donated input is written in place, so it cannot be copied into a slot: when it moves
  // at every run the plan is recorded a few times, then runs eagerly for good.
  Graph g;
  const ir::TensorType vec{Shape({1 << 15}), DType::F32};
  const ValueId x = g.input(vec, "x");
  const ValueId y = ir::mul_scalar(g, ir::add_scalar(g, x, 1.0), 0.5);
  const MemoryPlan plan = plan_memory(g, {y}, {x});
  ASSERT_EQ(plan.placement[static_cast<size_t>(y)], Placement::Donated);
  RecordingCpuBackend rec;
  Executor exec(rec);
  ReplayState state;
  std::vector<std::shared_ptr<Storage>> kept;  // so that every run's input is somewhere new
  for (int run = 0; run < 8; ++run) {
    const std::vector<float> host = ramp(1 << 15, 0.1f * static_cast<float>(run + 1), 1.0f);
    kept.push_back(upload(rec, host));
    const RunResult r = exec.run(g, plan, {{x, kept.back()->data()}}, {{x, kept.back()}}, &state);
    EXPECT_EQ(r.outputs[0].get(), kept.back().get());
    const std::vector<float> got = download(rec, *r.outputs[0]);
    for (size_t i = 0; i < got.size(); i += 997) EXPECT_EQ(got[i], (host[i] + 1.0f) * 0.5f) << run;
  }
  EXPECT_TRUE(state.disabled);
  EXPECT_EQ(state.recordings, ReplayState::kMaxRecordings);
  EXPECT_EQ(state.arena, nullptr);  // the memory kept for replays went back
}

// Rank 0 of two identical ranks on host f32 buffers: a sum doubles.
class TwinCommunicator final : public test::SingleProcessCommunicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  const char* name() const override { return "twin"; }
  void all_reduce_sum(void* data, size_t count, DType dtype) override {
    SOLO_CHECK(dtype == DType::F32, "twin communicator: f32 only");
    for (size_t i = 0; i < count; ++i) static_cast<float*>(data)[i] *= 2.0f;
  }
};

// Whether a collective is recorded must be the same on every rank (NCCL), but recording is
// decided from a rank's own addresses: plans with collectives across ranks run eagerly.
// Over one rank the collective is a copy, and the plan is recorded as usual.
TEST(Replay, PlansWithCollectivesAcrossRanksAreNotRecorded) {
  Graph g;
  const ValueId x = g.input({{1024}, DType::F32}, "x");
  const ValueId y = ir::add_scalar(g, ir::all_reduce(g, ir::mul_scalar(g, x, 3.0), false), 1.0);
  const MemoryPlan plan = plan_memory(g, {y});
  const std::vector<float> xs = ramp(1024, 0.5f, 10.0f);
  TwinCommunicator twin;
  const auto one_rank = comm::make_local_communicator();
  for (comm::Communicator* c : {static_cast<comm::Communicator*>(&twin), one_rank.get()}) {
    SCOPED_TRACE(c->name());
    RecordingCpuBackend rec;
    Executor exec(rec, nullptr, c);
    ReplayState state;
    const auto xd = upload(rec, xs);
    for (int step = 0; step < 4; ++step) {
      const RunResult r = exec.run(g, plan, {{x, xd->data()}}, {}, &state);
      const std::vector<float> got = download(rec, *r.outputs[0]);
      size_t wrong = 0;
      for (size_t i = 0; i < xs.size(); ++i)
        wrong += got[i] != 3.0f * xs[i] * static_cast<float>(c->size()) + 1.0f;
      EXPECT_EQ(wrong, 0u) << "step " << step;
    }
    EXPECT_EQ(state.recordings, c->size() == 1 ? 1 : 0);
    EXPECT_EQ(state.replays, c->size() == 1 ? 3 : 0);  // the second run records and replays
  }
}

}  // namespace
}  // namespace solo::runtime
