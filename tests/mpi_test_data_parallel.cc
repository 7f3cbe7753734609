// The data-parallel pass end to end under 2, 3 and 4 ranks: a cross-entropy step over rows
// whose ignored labels (-100) fall unevenly over the ranks (rank 0 has none counted) gives
// the one-device loss and gradient on every rank, though each rank computes only its rows:
// the mean is over the tokens of all ranks, not a mean of the ranks' means.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
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

using ir::ValueId;

comm::Communicator* world = nullptr;

constexpr int64_t kRowsPerRank = 3, kIn = 4, kClasses = 6;

struct Step {
  ir::Graph g;
  ValueId x = ir::kNoValue, labels = ir::kNoValue, w = ir::kNoValue;
  std::vector<ValueId> outputs;  // loss, dw
};

// loss = cross_entropy(x w, labels) over `rows` rows, and its gradient for w.
Step build_step(int64_t rows) {
  Step s;
  s.x = s.g.input({{rows, kIn}, DType::F32}, "x", /*batch=*/true);
  s.labels = s.g.input({{rows}, DType::I64}, "labels", /*batch=*/true);
  s.w = s.g.input({{kIn, kClasses}, DType::F32}, "w");
  const ValueId loss = ir::cross_entropy(s.g, ir::matmul(s.g, s.x, s.w), s.labels);
  const ValueId dw = autograd::gradients(s.g, loss, {s.w})[0];
  s.g.mark_gradient(dw);
  s.outputs = {loss, dw};
  return s;
}

// Runs the step of `plan` on the global batch and returns its outputs, read on this rank.
std::vector<std::vector<float>> run(const compile::PlanSpec& plan, const std::vector<float>& x,
                                    const std::vector<int64_t>& labels, const std::vector<float>& w,
                                    comm::Communicator* comm) {
  const auto rows = static_cast<int64_t>(labels.size());
  const Step s = build_step(rows);
  const compile::Program program = compile::compile(s.g, s.outputs, {}, plan);
  EXPECT_EQ(program.batch_gathers, 0);
  auto backend = make_backend("cpu");
  std::vector<std::unique_ptr<Storage>> storage;
  std::unordered_map<ValueId, const void*> bound;
  // A batch input reads this rank's rows of the whole batch.
  const int64_t first = comm ? comm->rank() * (rows / plan.dp) : 0, count = rows / plan.dp;
  auto bind = [&](ValueId v, const void* data, size_t row_bytes, int64_t n) {
    storage.push_back(std::make_unique<Storage>(*backend, row_bytes * static_cast<size_t>(n)));
    backend->copy_from_host(storage.back()->data(), data, storage.back()->bytes());
    bound[program.local(v)] = storage.back()->data();
  };
  bind(s.x, x.data() + first * kIn, kIn * sizeof(float), count);
  bind(s.labels, labels.data() + first, sizeof(int64_t), count);
  bind(s.w, w.data(), w.size() * sizeof(float), 1);
  runtime::Executor exec(*backend, nullptr, comm);
  const runtime::RunResult r = exec.run(*program.graph, program.memory, bound);
  EXPECT_EQ(r.peak_bytes, program.memory.peak_bytes());
  std::vector<std::vector<float>> out;
  for (size_t k = 0; k < s.outputs.size(); ++k) {
    const Storage& o = *r.outputs[k];
    out.emplace_back(o.bytes() / sizeof(float));
    backend->copy_to_host(out.back().data(), o.data(), o.bytes());
  }
  return out;
}

TEST(DataParallel, CrossEntropyOverUnevenlyIgnoredRowsMatchesOneRank) {
  const int R = world->size();
  const int64_t rows = kRowsPerRank * R;
  std::vector<float> x(static_cast<size_t>(rows * kIn)), w(kIn * kClasses);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(std::sin(0.7 * i));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(std::cos(0.3 * i)) * 0.5f;
  std::vector<int64_t> labels(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i)  // rank 0's rows all ignored, every third row elsewhere
    labels[static_cast<size_t>(i)] = i < kRowsPerRank || i % 3 == 1 ? -100 : i % kClasses;
  const auto want = run(compile::PlanSpec{}, x, labels, w, nullptr);
  const auto got = run(compile::PlanSpec{.dp = R}, x, labels, w, world);
  ASSERT_EQ(got.size(), want.size());
  ASSERT_TRUE(std::isfinite(want[0][0]));
  for (size_t o = 0; o < want.size(); ++o) {
    ASSERT_EQ(got[o].size(), want[o].size());
    for (size_t k = 0; k < want[o].size(); ++k)
      EXPECT_NEAR(got[o][k], want[o][k], 1e-6 + 1e-5 * std::fabs(want[o][k]))
          << "output " << o << " element " << k << " on " << R << " ranks";
  }
}

}  // namespace
}  // namespace solo

int main(int argc, char** argv) {
  return solo::test::main_on_every_rank(argc, argv, "mpi_test_data_parallel", solo::world);
}
