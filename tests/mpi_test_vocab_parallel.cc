// The vocabulary-parallel loss and embedding end to end under 2, 3 and 4 ranks: a step graph
// (embedding, tied-free LM head, cross-entropy with ignored labels, gradients) is split by the
// tensor-parallel pass, each rank runs its graph on the cpu backend with its blocks of the
// weights through the MPI communicator as group 1, and the loss and its blocks of both weight
// gradients equal the one-device graph's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <unordered_map>
#include <vector>

#include "mpi_test_support.h"
#include "solo/autograd/autograd.h"
#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/compile/tensor_parallel.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"

namespace solo {
namespace {

using ir::Graph;
using ir::ValueId;

comm::Communicator* world = nullptr;

// A host tensor to bind: f32 or i64 values.
struct Data {
  std::vector<float> f32;
  std::vector<int64_t> i64;
  const void* bytes() const {
    return f32.empty() ? static_cast<const void*>(i64.data()) : f32.data();
  }
  size_t size() const { return f32.empty() ? i64.size() * 8 : f32.size() * 4; }
};

// Runs `outputs` of g on the cpu backend (groups: the executor's communicators).
std::vector<std::vector<float>> run(const Graph& g, const std::unordered_map<ValueId, Data>& in,
                                    const std::vector<ValueId>& outputs,
                                    std::vector<comm::Communicator*> groups) {
  auto backend = make_backend("cpu");
  std::vector<std::unique_ptr<Storage>> storage;
  std::unordered_map<ValueId, const void*> bound;
  for (const auto& [v, d] : in) {
    storage.push_back(std::make_unique<Storage>(*backend, d.size()));
    backend->copy_from_host(storage.back()->data(), d.bytes(), d.size());
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

std::vector<float> values(size_t n, double scale, double phase) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(scale * std::sin(0.7 * double(i) + phase));
  return v;
}

// Rows [begin, end) of a row-major [rows, cols] tensor.
std::vector<float> row_block(const std::vector<float>& x, int64_t cols, int64_t begin,
                             int64_t end) {
  return {x.begin() + begin * cols, x.begin() + end * cols};
}

TEST(VocabParallel, LossAndWeightGradientsEqualOneDevice) {
  const int n = world->size(), rank = world->rank();
  const int64_t N = 6, D = 4, V = 24, Vn = V / n;
  Graph g;
  const ValueId embed = g.input({{V, D}, DType::F32}, "embed");
  const ValueId head = g.input({{V, D}, DType::F32}, "head");
  const ValueId ids = g.input({{N}, DType::I64}, "ids", /*batch=*/true);
  const ValueId labels = g.input({{N}, DType::I64}, "labels", /*batch=*/true);
  const ValueId logits = ir::matmul(g, ir::embedding(g, embed, ids), head, false, true);
  const ValueId loss = ir::cross_entropy(g, logits, labels, -100);
  const std::vector<ValueId> grads = autograd::gradients(g, loss, {embed, head});
  const std::vector<ValueId> outputs{loss, grads[0], grads[1]};

  const std::vector<float> e = values(static_cast<size_t>(V * D), 1.0, 0.3);
  const std::vector<float> h = values(static_cast<size_t>(V * D), 2.0, 1.1);
  const Data id_data{{}, {0, 23, 7, 12, 5, 18}}, label_data{{}, {3, -100, 23, 0, 11, 17}};
  const auto one = run(g, {{embed, {e, {}}}, {head, {h, {}}}, {ids, id_data}, {labels, label_data}},
                       outputs, {nullptr});

  std::vector<ValueId> value_of;
  compile::SplitStats stats;
  // As a step after the first: the split weights are bound as their blocks.
  const Graph rank_graph = compile::tensor_parallel(g, outputs, n, value_of, &stats,
                                                    /*parameters_as_blocks=*/true);
  EXPECT_EQ(stats.gathered, 0);
  for (ValueId v = 0; v < rank_graph.num_values(); ++v)
    EXPECT_NE(rank_graph.shape(v), Shape({N, V}));  // no rank holds whole rows of logits
  // Both weights are bound as this rank's rows (the vocabulary's block r).
  std::unordered_map<ValueId, Data> in;
  for (const auto& [step, whole] : {std::pair{embed, &e}, std::pair{head, &h}}) {
    const ValueId v = value_of[static_cast<size_t>(step)];
    ASSERT_EQ(rank_graph.producer(v).attrs.i_or(compile::kSplitAxisAttr, -1), 0);
    in[v] = {row_block(*whole, D, rank * Vn, (rank + 1) * Vn), {}};
  }
  in[value_of[static_cast<size_t>(ids)]] = id_data;
  in[value_of[static_cast<size_t>(labels)]] = label_data;
  std::vector<ValueId> rank_outputs;
  for (ValueId v : outputs) rank_outputs.push_back(value_of[static_cast<size_t>(v)]);
  ASSERT_EQ(stats.output_axes.size(), 2u);  // both gradients are blocks along the vocabulary
  const auto got = run(rank_graph, in, rank_outputs, {nullptr, world});

  EXPECT_NEAR(got[0][0], one[0][0], 1e-5 * std::abs(one[0][0]));
  for (size_t k = 1; k < 3; ++k) {
    const std::vector<float> want = row_block(one[k], D, rank * Vn, (rank + 1) * Vn);
    ASSERT_EQ(got[k].size(), want.size());
    double err = 0;
    for (size_t i = 0; i < want.size(); ++i)
      err = std::max(err, std::abs(double(got[k][i]) - double(want[i])));
    EXPECT_LT(err, 1e-6) << "gradient " << k;
    if (rank == 0)
      std::printf("%d ranks: loss %.7g (one device %.7g), gradient %zu max error %.3g\n", n,
                  got[0][0], one[0][0], k, err);
  }
}

}  // namespace
}  // namespace solo

int main(int argc, char** argv) {
  return solo::test::main_on_every_rank(argc, argv, "mpi_test_vocab_parallel", solo::world);
}
