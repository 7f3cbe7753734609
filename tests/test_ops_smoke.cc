// End-to-end check of the op test machinery on the ops it is built from (add, mul, sum,
// broadcast_to, reshape): hand-computed values and finite-difference gradients.
#include <gtest/gtest.h>

#include "op_check.h"
#include "solo/ir/ops.h"

namespace solo::test {
namespace {

using ir::Graph;
using ir::ValueId;

TEST(OpsSmoke, BroadcastAddMulSumHandValues) {
  const auto a = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto b = float_tensor({3}, DType::F32, {10, 20, 30});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    const ValueId s = ir::add(g, in[0], in[1]);
    const ValueId p = ir::mul(g, in[0], in[1]);
    return std::vector<ValueId>{s, p, ir::sum(g, p, {1}), ir::sum(g, p)};
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {a, b}, build),
                  {{11, 22, 33, 14, 25, 36}, {10, 40, 90, 40, 100, 180}, {140, 320}, {460}}, 0, 0);
  }
}

TEST(OpsSmoke, GradientsOfBroadcastMulSum) {
  const auto a = random_tensor({2, 3, 4}, DType::F64, 1);
  const auto b = random_tensor({3, 1}, DType::F64, 2);
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    const ValueId p = ir::mul(g, ir::add(g, in[0], in[1]), in[1]);
    return std::vector<ValueId>{ir::sum(g, p, {0, 2}, true), ir::reshape(g, p, {6, 4})};
  };
  expect_gradients_match_finite_differences({a, b}, build, {0, 1});
}

}  // namespace
}  // namespace solo::test
