// Optimizers against PyTorch: parameter trajectories of 5 steps on a quadratic, recorded
// with torch.optim (SGD, momentum + dampening + weight decay, Nesterov, AdamW, AdamW with
// clip_grad_norm_), plus LR schedules in closed form and option validation.
#include <gtest/gtest.h>

#include <cmath>

#include "solo/core/error.h"
#include "solo/optim/optimizer.h"
#include "solo/tensor/tensor_impl.h"

namespace solo::optim {
namespace {

using Trajectory = std::vector<std::vector<float>>;

// loss = sum(c * (p - t)^2) with p0 = [1, -2, 0.5], t = [0.3, 0.1, -0.7], c = [1, 3, 0.5].
template <class MakeOpt>
Trajectory run(MakeOpt make, double clip = 0) {
  Tensor p = Tensor::from_vector(std::vector<float>{1.0f, -2.0f, 0.5f}, {3});
  p.requires_grad_();
  const Tensor t = Tensor::from_vector(std::vector<float>{0.3f, 0.1f, -0.7f}, {3});
  const Tensor c = Tensor::from_vector(std::vector<float>{1.0f, 3.0f, 0.5f}, {3});
  auto opt = make(std::vector<Tensor*>{&p});
  Trajectory out;
  for (int i = 0; i < 5; ++i) {
    opt.zero_grad();
    const Tensor d = p - t;
    sum(d * d * c).backward();
    if (clip > 0) clip_grad_norm({&p}, clip);
    opt.step();
    out.push_back(p.to_vector());
  }
  return out;
}

void expect_trajectory(const Trajectory& got, const Trajectory& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size(); ++s)
    for (size_t i = 0; i < 3; ++i)
      // f32 rounding differs from torch.optim (foreach kernels) by a few ulps per step;
      // a wrong formula is off by >= 1e-3 (steps are ~0.05).
      EXPECT_NEAR(got[s][i], want[s][i], 1e-5) << "step " << s + 1 << " element " << i;
}

TEST(SGD, MatchesPyTorch) {
  expect_trajectory(run([](auto ps) { return SGD(ps, {.lr = 0.1}); }),
                    {{0.860000014, -0.74000001, 0.379999995},
                     {0.748000026, -0.236000001, 0.272000015},
                     {0.658399999, -0.0343999937, 0.174800009},
                     {0.58671999, 0.0462400019, 0.0873200074},
                     {0.52937597, 0.0784960017, 0.00858800486}});
}

TEST(SGD, MomentumDampeningWeightDecayMatchPyTorch) {
  expect_trajectory(
      run([](auto ps) {
        return SGD(ps, {.lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
      }),
      {{0.929499984, -1.36899996, 0.439749986},
       {0.80897671, -0.403853893, 0.334038347},
       {0.65433383, 0.600999832, 0.19221583},
       {0.482970774, 1.36982775, 0.0243393574},
       {0.312059313, 1.71830297, -0.159355685}});
}

TEST(SGD, NesterovMatchesPyTorch) {
  expect_trajectory(
      run([](auto ps) { return SGD(ps, {.lr = 0.05, .momentum = 0.9, .nesterov = true}); }),
      {{0.866999984, -0.803000033, 0.386000007},
       {0.702569962, 0.222009897, 0.234230012},
       {0.529124677, 0.831163228, 0.057755176},
       {0.365721524, 0.995580852, -0.131018579},
       {0.226792827, 0.830489695, -0.320869207}});
}

TEST(AdamW, MatchesPyTorch) {
  expect_trajectory(
      run([](auto ps) {
        return AdamW(ps,
                     {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1});
      }),
      {{0.889999986, -1.88, 0.395000011},
       {0.78186655, -1.76138318, 0.29137218},
       {0.676327288, -1.64427185, 0.189362034},
       {0.574339569, -1.5287981, 0.0892507881},
       {0.477132082, -1.41510391, -0.00864119083}});
}

TEST(AdamW, WithGradientClippingMatchesPyTorch) {
  expect_trajectory(run([](auto ps) { return AdamW(ps, {.lr = 0.1, .weight_decay = 0.0}); }, 1.0),
                    {{0.900000036, -1.89999998, 0.400000006},
                     {0.800404608, -1.79999614, 0.300112635},
                     {0.701647103, -1.69998598, 0.200439453},
                     {0.604358494, -1.599967, 0.10110949},
                     {0.509461343, -1.4999373, 0.00228803605}});
}

TEST(ClipGradNorm, ScalesToMaxNormAndReturnsTheNorm) {
  Tensor p = Tensor::from_vector(std::vector<float>{0, 0}, {2});
  p.set_grad(Tensor::from_vector(std::vector<float>{3, 4}, {2}));
  const Tensor norm = clip_grad_norm({&p}, 1.0);
  EXPECT_NEAR(norm.item(), 5.0, 1e-6);
  const auto g = p.grad().to_vector();
  EXPECT_NEAR(g[0], 0.6, 1e-6);
  EXPECT_NEAR(g[1], 0.8, 1e-6);
  p.set_grad(Tensor::from_vector(std::vector<float>{0.3f, 0.4f}, {2}));
  clip_grad_norm({&p}, 1.0);  // below the limit: unchanged
  EXPECT_NEAR(p.grad().to_vector()[1], 0.4, 1e-6);
}

TEST(LRSchedule, WarmupThenCosineAndLinear) {
  LRSchedule cosine{LRSchedule::Kind::WarmupCosine, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(cosine.factor(0), 0.1);
  EXPECT_DOUBLE_EQ(cosine.factor(9), 1.0);
  EXPECT_DOUBLE_EQ(cosine.factor(10), 1.0);
  EXPECT_NEAR(cosine.factor(60), 0.1 + 0.9 * 0.5, 1e-12);  // halfway: cos(pi/2) = 0
  EXPECT_NEAR(cosine.factor(110), 0.1, 1e-12);
  LRSchedule linear{LRSchedule::Kind::WarmupLinear, 0, 100, 0.0};
  EXPECT_NEAR(linear.factor(25), 0.75, 1e-12);
  EXPECT_DOUBLE_EQ(LRSchedule{}.factor(1000), 1.0);
}

TEST(Optimizers, BadOptionsAreErrors) {
  Tensor p = Tensor::zeros({2});
  p.requires_grad_();
  EXPECT_THROW(SGD({&p}, {.lr = -1}), Error);
  EXPECT_THROW(SGD({&p}, {.lr = 0.1, .nesterov = true}), Error);
  EXPECT_THROW(AdamW({&p}, {.beta1 = 1.0}), Error);
  EXPECT_THROW(AdamW({}, {}), Error);
  EXPECT_THROW(clip_grad_norm({&p}, 0.0), Error);
}

TEST(AdamW, UpdatesParameterAndStatesInTheirOwnStorage) {
  // The old parameter and moments are dead once the update has read them, so the step
  // writes the new values over them: no new storage, and the address stays put.
  const int64_t n = 1 << 18;
  const size_t bytes = n * sizeof(float);
  Tensor p = Tensor::full({n}, 0.5, DType::F32);
  p.requires_grad_();
  AdamW opt({&p}, {.lr = 0.1});
  auto step = [&] {
    opt.zero_grad();
    sum(p * p).backward();
    opt.step();
    sync();
  };
  step();
  const void* address = p.impl()->storage->data();
  step();
  EXPECT_EQ(p.impl()->storage->data(), address);
  const size_t donating_peak = last_flush_peak_bytes();
  {
    // Holding the old storage forbids the reuse: p', m' and v' then need storage of their own.
    const std::shared_ptr<Storage> held = p.impl()->storage;
    step();
    EXPECT_NE(p.impl()->storage->data(), held->data());
  }
  EXPECT_EQ(last_flush_peak_bytes() - donating_peak, bytes);  // only p's storage was held
  const std::vector<float> before = p.to_vector();
  step();
  const std::vector<float> after = p.to_vector();
  EXPECT_LT(after[0], before[0]);  // the update still moves p towards 0
}

TEST(Optimizers, StepsHaveTheSameGraphStructure) {
  // Step-dependent values enter as 0-d tensors, so every step's graph hashes the same.
  Tensor p = Tensor::from_vector(std::vector<float>{1, 2}, {2});
  p.requires_grad_();
  AdamW opt({&p}, {.lr = 0.1});
  std::vector<uint64_t> hashes;
  const int64_t hits_before = plan_cache_hits();
  for (int i = 0; i < 4; ++i) {
    opt.zero_grad();
    sum(p * p).backward();
    opt.step();
    hashes.push_back(last_flush_graph_hash());
  }
  EXPECT_NE(hashes[0], 0u);
  EXPECT_EQ(hashes[1], hashes[2]);
  EXPECT_EQ(hashes[2], hashes[3]);
  EXPECT_GE(plan_cache_hits() - hits_before, 2);  // steps 3 and 4 reuse step 2's plan
}

}  // namespace
}  // namespace solo::optim
