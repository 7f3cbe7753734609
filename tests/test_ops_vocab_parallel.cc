// Vocabulary-parallel ops (VocabShardCrossEntropy, VocabShardEmbedding and their Backward
// ops): the reference against the formulas of ir/ops.h written out here, cpu against the
// reference, and a one-process simulation of n = 2 and 4 ranks (each rank's kernels run as
// that rank on its block, the collectives done by hand) against the one-device CrossEntropy,
// Embedding and their backward ops, with ignored labels and bf16 logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "op_check.h"
#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::test {
namespace {

using ir::Graph;
using ir::ValueId;

constexpr int64_t kIgnore = -100;
constexpr int64_t kGroup = 1;  // tensor parallelism's communicator group

Builder shard_cross_entropy(int64_t ranks) {
  return [ranks](Graph& g, const std::vector<ValueId>& in) {
    return ir::vocab_shard_cross_entropy(g, in[0], in[1], ranks, kIgnore, kGroup);
  };
}
// in: logits block, labels, lse, scale
Builder shard_cross_entropy_backward(int64_t ranks) {
  return [ranks](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::vocab_shard_cross_entropy_backward(
        g, in[0], in[1], in[2], in[3], ranks, kIgnore, kGroup)};
  };
}
Builder shard_embedding(int64_t ranks) {
  return [ranks](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::vocab_shard_embedding(g, in[0], in[1], ranks, kGroup)};
  };
}
// in: ids, dy
Builder shard_embedding_backward(int64_t rows, int64_t ranks) {
  return [rows, ranks](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{
        ir::vocab_shard_embedding_backward(g, in[0], in[1], rows, ranks, kGroup)};
  };
}

// Columns [begin, end) of x [N, V].
HostTensor columns(const HostTensor& x, int64_t begin, int64_t end) {
  const int64_t N = x.type.shape[0], V = x.type.shape[1];
  HostTensor b{{Shape{N, end - begin}, x.type.dtype}, {}};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = begin; j < end; ++j)
      b.values.push_back(x.values[static_cast<size_t>(n * V + j)]);
  return b;
}
// Rows [begin, end) of w [V, D].
HostTensor rows(const HostTensor& w, int64_t begin, int64_t end) {
  const int64_t D = w.type.shape[1];
  return {{Shape{end - begin, D}, w.type.dtype},
          std::vector<double>(w.values.begin() + begin * D, w.values.begin() + end * D)};
}

double max_error(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double e = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) e = std::max(e, std::abs(a[i] - b[i]));
  return e;
}

const std::vector<int64_t> kLabels = {5, kIgnore, 11, 0, 7};

TEST(VocabShardCrossEntropy, ReferenceFollowsTheFormula) {
  // 3 ranks of 4 entries each; rows [5, 12], every label in a different block.
  const auto logits = random_tensor({5, 12}, DType::F64, 81, -3, 3);
  const auto labels = int_tensor({5}, DType::I64, kLabels);
  const int ranks = 3;
  const int64_t Vn = 4;
  for (int r = 0; r < ranks; ++r) {
    SCOPED_TRACE(r);
    std::vector<double> lse, target;
    for (int64_t n = 0; n < 5; ++n) {
      double s = 0;
      for (int64_t j = r * Vn; j < (r + 1) * Vn; ++j) s += std::exp(logits.values[n * 12 + j]);
      lse.push_back(std::log(s));
      const int64_t l = kLabels[static_cast<size_t>(n)];
      target.push_back(l != kIgnore && l / Vn == r ? logits.values[n * 12 + l] : 0.0);
    }
    expect_values(run_graph_as_rank("reference", {columns(logits, r * Vn, (r + 1) * Vn), labels},
                                    shard_cross_entropy(ranks), r, ranks),
                  {lse, target}, 1e-13, 1e-14);
    // dlogits = (exp(x - lse) - onehot) * scale for a given whole-row lse; ignored rows zero.
    const auto row_lse = random_tensor({5}, DType::F64, 82, 1, 2);
    const auto scale = float_tensor({}, DType::F64, {0.7});
    std::vector<double> expected;
    for (int64_t n = 0; n < 5; ++n)
      for (int64_t j = r * Vn; j < (r + 1) * Vn; ++j) {
        const int64_t l = kLabels[static_cast<size_t>(n)];
        const double p = std::exp(logits.values[n * 12 + j] - row_lse.values[n]);
        expected.push_back(l == kIgnore ? 0.0 : (p - (l == j ? 1.0 : 0.0)) * 0.7);
      }
    expect_values(run_graph_as_rank("reference",
                                    {columns(logits, r * Vn, (r + 1) * Vn), labels, row_lse, scale},
                                    shard_cross_entropy_backward(ranks), r, ranks),
                  {expected}, 1e-13, 1e-15);
  }
}

TEST(VocabShardEmbedding, ReferenceFollowsTheFormula) {
  const auto weight = random_tensor({12, 3}, DType::F64, 83);
  const std::vector<int64_t> id_values = {0, 5, 11, 4, 4, 8};
  const auto ids = int_tensor({2, 3}, DType::I32, id_values);
  const auto dy = random_tensor({2, 3, 3}, DType::F64, 84);
  const int ranks = 3;
  const int64_t Vn = 4;
  for (int r = 0; r < ranks; ++r) {
    SCOPED_TRACE(r);
    std::vector<double> y, dw(static_cast<size_t>(Vn * 3), 0.0);
    for (size_t n = 0; n < id_values.size(); ++n) {
      const int64_t id = id_values[n];
      const bool here = id / Vn == r;
      for (int64_t d = 0; d < 3; ++d) {
        y.push_back(here ? weight.values[static_cast<size_t>(id * 3 + d)] : 0.0);
        if (here)
          dw[static_cast<size_t>((id - r * Vn) * 3 + d)] +=
              dy.values[n * 3 + static_cast<size_t>(d)];
      }
    }
    expect_values(run_graph_as_rank("reference", {rows(weight, r * Vn, (r + 1) * Vn), ids},
                                    shard_embedding(ranks), r, ranks),
                  {y}, 0, 0);
    expect_values(
        run_graph_as_rank("reference", {ids, dy}, shard_embedding_backward(Vn, ranks), r, ranks),
        {dw}, 1e-15, 0);
  }
}

// cpu against the reference, as every rank of 2 and 4, f32 and f64 (and bf16 logits, weights).
TEST(VocabParallel, CpuMatchesReferenceOnEveryRank) {
  const int64_t V = 3000, N = 7;
  const std::vector<int64_t> label_values = {0, 2999, kIgnore, 17, 1500, 749, 2250};
  const auto labels = int_tensor({N}, DType::I64, label_values);
  const auto ids = int_tensor({N}, DType::I32, {0, 2999, 5, 17, 1500, 749, 2250});
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    const DType loss_dt = dt == DType::F64 ? DType::F64 : DType::F32;
    const double rtol = dt == DType::F64 ? 1e-12 : dt == DType::F32 ? 1e-5 : 1e-2;
    const double atol = dt == DType::F64 ? 1e-14 : dt == DType::F32 ? 1e-7 : 1e-4;
    const auto logits = random_tensor({N, V}, dt, 85, -8, 8);
    const auto lse = random_tensor({N}, loss_dt, 86, 9, 10);
    const auto scale = float_tensor({}, loss_dt, {0.3});
    const auto weight = random_tensor({V, 5}, dt, 87);
    const auto dy = random_tensor({N, 5}, dt, 88);
    for (int ranks : {2, 4}) {
      const int64_t Vn = V / ranks;
      for (int r = 0; r < ranks; ++r) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " rank " + std::to_string(r) + " of " +
                     std::to_string(ranks));
        const auto block = columns(logits, r * Vn, (r + 1) * Vn);
        auto check = [&](const std::vector<HostTensor>& in, const Builder& b) {
          expect_values(
              run_graph_as_rank("cpu", in, b, r, ranks),
              [&] {
                std::vector<std::vector<double>> e;
                for (const HostTensor& t : run_graph_as_rank("reference", in, b, r, ranks))
                  e.push_back(t.values);
                return e;
              }(),
              rtol, atol);
        };
        check({block, labels}, shard_cross_entropy(ranks));
        check({block, labels, lse, scale}, shard_cross_entropy_backward(ranks));
        check({rows(weight, r * Vn, (r + 1) * Vn), ids}, shard_embedding(ranks));
        check({ids, dy}, shard_embedding_backward(Vn, ranks));
      }
    }
  }
}

// The ranks' results combined as the splitter's collectives combine them (lse gathered and
// merged shifted by their max, targets summed, dlogits blocks side by side) equal one device.
struct Combined {
  std::vector<double> loss, dlogits;
};
Combined simulate_ranks(const std::string& backend, const HostTensor& logits,
                        const HostTensor& labels, double dloss, int ranks) {
  const int64_t N = logits.type.shape[0], V = logits.type.shape[1], Vn = V / ranks;
  const DType loss_dt = logits.type.dtype == DType::F64 ? DType::F64 : DType::F32;
  std::vector<std::vector<double>> lse_of(static_cast<size_t>(ranks));
  std::vector<double> target(static_cast<size_t>(N), 0.0);
  for (int r = 0; r < ranks; ++r) {
    const auto out = run_graph_as_rank(backend, {columns(logits, r * Vn, (r + 1) * Vn), labels},
                                       shard_cross_entropy(ranks), r, ranks);
    lse_of[static_cast<size_t>(r)] = out[0].values;
    for (int64_t n = 0; n < N; ++n)
      target[static_cast<size_t>(n)] += out[1].values[static_cast<size_t>(n)];
  }
  HostTensor lse{{Shape{N}, loss_dt}, {}};
  double total = 0, count = 0;
  for (int64_t n = 0; n < N; ++n) {
    double mx = -std::numeric_limits<double>::infinity(), s = 0;
    for (const auto& l : lse_of) mx = std::max(mx, l[static_cast<size_t>(n)]);
    for (const auto& l : lse_of) s += std::exp(l[static_cast<size_t>(n)] - mx);
    lse.values.push_back(mx + std::log(s));
    if (labels.values[static_cast<size_t>(n)] == double(kIgnore)) continue;
    total += lse.values.back() - target[static_cast<size_t>(n)];
    ++count;
  }
  Combined c;
  c.loss = {count ? total / count : std::numeric_limits<double>::quiet_NaN()};
  c.dlogits.assign(static_cast<size_t>(N * V), 0.0);
  const auto scale = float_tensor({}, loss_dt, {dloss / count});
  for (int r = 0; r < ranks; ++r) {
    const auto out =
        run_graph_as_rank(backend, {columns(logits, r * Vn, (r + 1) * Vn), labels, lse, scale},
                          shard_cross_entropy_backward(ranks), r, ranks);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < Vn; ++j)
        c.dlogits[static_cast<size_t>(n * V + r * Vn + j)] =
            out[0].values[static_cast<size_t>(n * Vn + j)];
  }
  return c;
}

TEST(VocabParallel, RanksTogetherGiveTheOneDeviceLossAndGradient) {
  const int64_t N = 6, V = 40;
  const auto labels = int_tensor({N}, DType::I64, {5, kIgnore, 39, 0, 20, kIgnore});
  const double dloss = 1.3;
  for (const char* backend : {"reference", "cpu"}) {
    for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
      const auto logits = random_tensor({N, V}, dt, 89, -20, 20);  // wide: the max shift matters
      const DType loss_dt = dt == DType::F64 ? DType::F64 : DType::F32;
      const auto one_loss =
          run_graph(backend, {logits, labels}, [](Graph& g, const std::vector<ValueId>& in) {
            return std::vector<ValueId>{ir::cross_entropy(g, in[0], in[1], kIgnore)};
          });
      const auto one_grad = run_graph(backend, {logits, labels, float_tensor({}, loss_dt, {dloss})},
                                      [](Graph& g, const std::vector<ValueId>& in) {
                                        return std::vector<ValueId>{ir::cross_entropy_backward(
                                            g, in[0], in[1], in[2], kIgnore)};
                                      });
      // bf16 dlogits are rounded once from f32 values that differ by a few f32 ulps.
      const double rtol = dt == DType::F64 ? 1e-12 : dt == DType::F32 ? 1e-5 : 8e-3;
      const double atol = dt == DType::F64 ? 1e-14 : dt == DType::F32 ? 1e-7 : 1e-6;
      for (int ranks : {2, 4}) {
        SCOPED_TRACE(std::string(backend) + " " + dtype_name(dt) + " on " + std::to_string(ranks) +
                     " ranks");
        const Combined c = simulate_ranks(backend, logits, labels, dloss, ranks);
        expect_values(one_loss, {c.loss}, dt == DType::F64 ? 1e-13 : 1e-6, 0);
        expect_values(one_grad, {c.dlogits}, rtol, atol);
        std::printf("%s %s n=%d: loss error %.3g, dlogits max error %.3g\n", backend,
                    dtype_name(dt), ranks, std::abs(c.loss[0] - one_loss[0].values[0]),
                    max_error(c.dlogits, one_grad[0].values));
      }
    }
  }
}

// The combined loss's gradient by finite differences in f64 (independent of CrossEntropy).
TEST(VocabParallel, CombinedGradientMatchesFiniteDifferences) {
  const auto logits = random_tensor({3, 8}, DType::F64, 90, -3, 3);
  const auto labels = int_tensor({3}, DType::I32, {7, kIgnore, 2});
  const double eps = 1e-6;
  for (int ranks : {2, 4}) {
    const Combined c = simulate_ranks("reference", logits, labels, 1.0, ranks);
    for (size_t i = 0; i < logits.values.size(); ++i) {
      HostTensor plus = logits, minus = logits;
      plus.values[i] += eps;
      minus.values[i] -= eps;
      const double fd = (simulate_ranks("reference", plus, labels, 1.0, ranks).loss[0] -
                         simulate_ranks("reference", minus, labels, 1.0, ranks).loss[0]) /
                        (2 * eps);
      EXPECT_NEAR(c.dlogits[i], fd, 1e-8 + 1e-6 * std::abs(fd)) << "element " << i;
    }
  }
}

TEST(VocabParallel, RanksTogetherGiveTheOneDeviceEmbedding) {
  const int64_t V = 40, D = 6;
  const auto ids = int_tensor({2, 5}, DType::I64, {0, 39, 10, 10, 21, 5, 30, 19, 20, 1});
  const auto dy = random_tensor({2, 5, D}, DType::F32, 91);
  for (const char* backend : {"reference", "cpu"}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      const auto weight = random_tensor({V, D}, dt, 92);
      const auto one =
          run_graph(backend, {weight, ids}, [](Graph& g, const std::vector<ValueId>& in) {
            return std::vector<ValueId>{ir::embedding(g, in[0], in[1])};
          });
      const auto one_grad =
          run_graph(backend, {ids, dy}, [V](Graph& g, const std::vector<ValueId>& in) {
            return std::vector<ValueId>{ir::embedding_backward(g, in[0], in[1], V)};
          });
      for (int ranks : {2, 4}) {
        SCOPED_TRACE(std::string(backend) + " " + dtype_name(dt) + " on " + std::to_string(ranks));
        const int64_t Vn = V / ranks;
        std::vector<double> sum(one[0].values.size(), 0.0), grad;
        for (int r = 0; r < ranks; ++r) {
          const auto y = run_graph_as_rank(backend, {rows(weight, r * Vn, (r + 1) * Vn), ids},
                                           shard_embedding(ranks), r, ranks);
          for (size_t i = 0; i < sum.size(); ++i) sum[i] += y[0].values[i];  // the all-reduce
          const auto dw =
              run_graph_as_rank(backend, {ids, dy}, shard_embedding_backward(Vn, ranks), r, ranks);
          grad.insert(grad.end(), dw[0].values.begin(), dw[0].values.end());
        }
        expect_values(one, {sum}, 0, 0);  // one rank holds each id: exact
        expect_values(one_grad, {grad}, 1e-7, 0);
      }
    }
  }
}

TEST(VocabParallel, TheExecutorChecksTheGroupAndTheKernelsTheVocabulary) {
  const auto logits = random_tensor({2, 4}, DType::F32, 93);
  // Built for 2 ranks, run with a group of 4 (or none: one rank).
  for (int size : {4, 1}) {
    try {
      if (size == 1)
        run_graph("cpu", {logits, int_tensor({2}, DType::I64, {1, 2})}, shard_cross_entropy(2));
      else
        run_graph_as_rank("cpu", {logits, int_tensor({2}, DType::I64, {1, 2})},
                          shard_cross_entropy(2), 0, size);
      ADD_FAILURE() << "no error for a group of " << size;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("was built for 2 ranks"), std::string::npos) << e.what();
    }
  }
  // A label outside the whole vocabulary [0, 8) is an error on any rank.
  for (const char* backend : {"reference", "cpu"})
    for (int r : {0, 1}) {
      try {
        run_graph_as_rank(backend, {logits, int_tensor({2}, DType::I64, {1, 8})},
                          shard_cross_entropy(2), r, 2);
        ADD_FAILURE() << backend << ": no error for label 8";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("label 8"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("V = 8"), std::string::npos) << e.what();
      }
    }
}

}  // namespace
}  // namespace solo::test
