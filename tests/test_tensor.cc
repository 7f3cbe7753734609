// The lazy tensor: capture without execution, flush on item(), autograd accumulation into
// .grad(), no-grad scopes, assign_, and clear errors.
#include <gtest/gtest.h>

#include "solo/core/error.h"
#include "solo/tensor/tensor.h"

namespace solo {
namespace {

class LazyTensor : public ::testing::TestWithParam<const char*> {
 protected:
  Device dev() const { return Device{GetParam()}; }
};

TEST_P(LazyTensor, OpsAreCapturedUntilItem) {
  const Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}, dev());
  const Tensor b = Tensor::from_vector(std::vector<float>{4, 5, 6}, {3}, dev());
  const int before = pending_graph(dev()).num_nodes();
  const Tensor s = sum(a * b);
  EXPECT_FALSE(s.is_realized());
  EXPECT_GT(pending_graph(dev()).num_nodes(), before);
  EXPECT_DOUBLE_EQ(s.item(), 32.0);
  EXPECT_TRUE(s.is_realized());
  EXPECT_EQ(pending_graph(dev()).num_nodes(), 0);  // the flush started a new graph
}

TEST_P(LazyTensor, BackwardAccumulatesIntoLeafGrads) {
  Tensor w = Tensor::from_vector(std::vector<float>{1, -2, 3}, {3}, dev());
  w.requires_grad_();
  const Tensor x = Tensor::from_vector(std::vector<float>{2, 3, 4}, {3}, dev());
  sum(w * x).backward();
  sum(w * w).backward();  // second backward on the same graph accumulates
  // d/dw [sum(w*x) + sum(w*w)] = x + 2w
  EXPECT_EQ(w.grad().to_vector(), std::vector<float>({4, -1, 10}));
  EXPECT_FALSE(x.grad().defined());  // x does not require grad
  w.zero_grad();
  EXPECT_FALSE(w.grad().defined());
}

TEST_P(LazyTensor, NoGradScopeStopsGradients) {
  Tensor w = Tensor::from_vector(std::vector<float>{1, 2}, {2}, dev());
  w.requires_grad_();
  Tensor frozen;
  {
    NoGradGuard no_grad;
    frozen = w * w;
    EXPECT_FALSE(frozen.requires_grad());
  }
  const Tensor loss = sum(frozen * w);
  loss.backward();
  EXPECT_EQ(w.grad().to_vector(), std::vector<float>({1, 4}));  // frozen treated as constant
}

TEST_P(LazyTensor, DetachCutsTheGraph) {
  Tensor w = Tensor::from_vector(std::vector<float>{3}, {1}, dev());
  w.requires_grad_();
  sum(w.detach() * w).backward();
  EXPECT_EQ(w.grad().to_vector(), std::vector<float>({3}));
}

TEST_P(LazyTensor, AssignRebindsEveryCopy) {
  Tensor p = Tensor::from_vector(std::vector<float>{1, 2}, {2}, dev());
  Tensor alias = p;
  p.assign_(p + p);
  EXPECT_EQ(alias.to_vector(), std::vector<float>({2, 4}));
  EXPECT_THROW(p.assign_(Tensor::zeros({3}, DType::F32, dev())), Error);
}

TEST_P(LazyTensor, BackwardAfterFlushIsAClearError) {
  Tensor w = Tensor::from_vector(std::vector<float>{1}, {1}, dev());
  w.requires_grad_();
  const Tensor loss = sum(w * w);
  loss.item();
  try {
    loss.backward();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("before reading"), std::string::npos) << e.what();
  }
}

TEST_P(LazyTensor, RandnIsDeterministicAndRoughlyStandard) {
  const auto a = Tensor::randn({10000}, 2.0, 7, dev()).to_vector();
  const auto b = Tensor::randn({10000}, 2.0, 7, dev()).to_vector();
  EXPECT_EQ(a, b);
  double mean = 0, var = 0;
  for (float v : a) mean += v;
  mean /= a.size();
  for (float v : a) var += (v - mean) * (v - mean);
  var /= a.size();
  EXPECT_NEAR(mean, 0.0, 0.06);
  EXPECT_NEAR(var, 4.0, 0.2);
}

INSTANTIATE_TEST_SUITE_P(Devices, LazyTensor, ::testing::Values("reference", "cpu"));

TEST(LazyTensorMeta, MetaTensorsTraceButHoldNoData) {
  const Tensor a = Tensor::zeros({1024, 1024}, DType::F32, meta_device());
  const Tensor s = sum(a * a);
  EXPECT_EQ(s.shape(), Shape());
  EXPECT_THROW(s.item(), Error);
}

TEST(LazyTensorErrors, MixedDevicesAreRejected) {
  const Tensor a = Tensor::zeros({2}, DType::F32, Device{"reference"});
  const Tensor b = Tensor::zeros({2}, DType::F32, meta_device());
  EXPECT_THROW(a + b, Error);
  EXPECT_THROW(Tensor::zeros({2}, DType::F32, Device{"tpu"}), Error);
}

}  // namespace
}  // namespace solo
