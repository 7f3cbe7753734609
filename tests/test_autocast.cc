// Mixed precision on the host backends: under AutocastGuard(BF16) matmul-like ops compute
// on bf16-rounded operands and give bf16 results (the GPU kernels' arithmetic), mixed
// operands meet at the wider dtype, and parameters, gradients and optimizer state stay f32.
// A tiny Llama trained with and without autocast follows the same loss curve to bf16
// precision.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <random>

#include "solo/core/half.h"
#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"
#include "solo/tensor/tensor.h"
#include "solo/tensor/tensor_impl.h"

namespace solo {
namespace {

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

float round_bf16(float x) {
  return bf16_to_f32(f32_to_bf16(x));
}

TEST(Autocast, MatmulRoundsOperandsAndResultToBf16) {
  const int64_t M = 7, K = 33, N = 5;
  const std::vector<float> a = random_values(M * K, 1), b = random_values(K * N, 2);
  const Tensor ta = Tensor::from_vector(a, {M, K}), tb = Tensor::from_vector(b, {K, N});
  Tensor y;
  {
    AutocastGuard autocast(DType::BF16);
    y = matmul(ta, tb);
  }
  ASSERT_EQ(y.dtype(), DType::BF16);  // the result stays in the autocast dtype, as in PyTorch
  const std::vector<float> got = y.to_vector(), exact = matmul(ta, tb).to_vector();
  int differs_from_f32 = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;  // f64 sum of products of the rounded operands
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<double>(round_bf16(a[static_cast<size_t>(i * K + k)])) *
               round_bf16(b[static_cast<size_t>(k * N + j)]);
      const float want = round_bf16(static_cast<float>(acc));
      const float g = got[static_cast<size_t>(i * N + j)];
      // f32 accumulation may round to the neighbouring bf16 value: one ulp (2^-8 relative).
      EXPECT_LE(std::abs(g - want), std::abs(want) * 0x1p-7f + 1e-6f) << i << "," << j;
      differs_from_f32 += g != exact[static_cast<size_t>(i * N + j)];
    }
  EXPECT_GT(differs_from_f32, 0);  // the f32 result is not what autocast computed
}

TEST(Autocast, AttentionOnHalfOperandsMatchesF32WithinBf16Precision) {
  const int64_t B = 2, T = 9, H = 2, D = 8;
  const std::vector<float> q = random_values(B * T * H * D, 3), k = random_values(B * T * H * D, 4),
                           v = random_values(B * T * H * D, 5);
  const Tensor tq = Tensor::from_vector(q, {B, T, H, D}), tk = Tensor::from_vector(k, {B, T, H, D}),
               tv = Tensor::from_vector(v, {B, T, H, D});
  const std::vector<float> f32 = scaled_dot_product_attention(tq, tk, tv, {}, true).to_vector();
  std::vector<float> half;
  {
    AutocastGuard autocast(DType::BF16);
    half = scaled_dot_product_attention(tq, tk, tv, {}, true).to_vector();
  }
  double err = 0, norm = 0;
  for (size_t i = 0; i < f32.size(); ++i) {
    err += (half[i] - f32[i]) * (half[i] - f32[i]);
    norm += f32[i] * f32[i];
  }
  // bf16 operands: relative error between 1e-3 and 1e-2, never exactly the f32 result.
  EXPECT_LT(std::sqrt(err / norm), 1e-2);
  EXPECT_GT(std::sqrt(err / norm), 1e-4);
}

TEST(Autocast, MixedOperandsMeetAtTheWiderDtype) {
  const std::vector<float> a = random_values(6, 8), b = random_values(6, 9);
  const Tensor half = cast(Tensor::from_vector(a, {6}), DType::BF16);
  const Tensor wide = Tensor::from_vector(b, {6});
  const Tensor sum = half + wide;
  ASSERT_EQ(sum.dtype(), DType::F32);
  const std::vector<float> got = sum.to_vector();
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(got[i], round_bf16(a[i]) + b[i]);
  EXPECT_EQ(where(Tensor::from_vector(std::vector<float>{1, 0}, {2}),
                  cast(Tensor::from_vector(std::vector<float>{1, 2}, {2}), DType::BF16),
                  Tensor::from_vector(std::vector<float>{3, 4}, {2}))
                .to_vector(),
            (std::vector<float>{1, 4}));
}

TEST(Autocast, EachValueIsCastOncePerGraph) {
  // x feeds three projections (q, k, v): one cast of x, one of each weight.
  const Tensor x = Tensor::from_vector(random_values(4 * 8, 10), {4, 8});
  std::vector<Tensor> w, y;
  for (unsigned i = 0; i < 3; ++i)
    w.push_back(Tensor::from_vector(random_values(64, 11 + i), {8, 8}));
  {
    AutocastGuard autocast(DType::BF16);
    for (const Tensor& wi : w) y.push_back(linear(x, wi));
  }
  DeviceContext& ctx = device_context(Device{"cpu"});
  const ir::Graph& g = ctx.trace().graph;
  const ir::ValueId xv = ctx.value_of(x);
  int casts_of_x = 0, casts = 0;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n)
    if (g.node(n).op == OpKind::Cast) {
      ++casts;
      casts_of_x += g.node(n).inputs[0] == xv;
    }
  EXPECT_EQ(casts_of_x, 1);
  EXPECT_EQ(casts, 4);
  for (const Tensor& yi : y) EXPECT_EQ(yi.dtype(), DType::BF16);
  sync();
}

// The memory plan sees autocast: planned on the meta device, a step of a Llama whose
// activations dominate needs markedly less under bf16 (activations in bf16; weights,
// gradients and AdamW state still f32).
TEST(Autocast, MemoryPlanOfAStepShrinksUnderBf16) {
  io::LlamaConfig c;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.vocab_size = 1000;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-5;
  const Device meta{"meta"};
  models::LlamaForCausalLM model(c, 1, meta);
  optim::AdamW opt(model.parameters(), {.lr = 1e-3});
  const Tensor ids = Tensor::zeros({8, 512}, DType::I64, meta);
  auto step_peak = [&](bool bf16) {
    for (int i = 0; i < 2; ++i) {  // the second step has the steady graph (optimizer state)
      Tensor loss;
      {
        std::optional<AutocastGuard> autocast;
        if (bf16) autocast.emplace(DType::BF16);
        loss = model.forward(ids, {}, ids).loss;
      }
      loss.backward();
      opt.step();
      opt.zero_grad();
    }
    return last_flush_peak_bytes(meta);
  };
  const size_t f32 = step_peak(false), bf16 = step_peak(true);
  const size_t state = static_cast<size_t>(model.num_parameters()) * 4 * 4;  // p, grad, m, v
  EXPECT_LT(bf16, f32);
  EXPECT_LT(bf16 - state, (f32 - state) * 7 / 10);  // activations: well under the f32 bytes
}

// Five AdamW steps of a tiny Llama on a fixed batch; returns the losses.
std::vector<double> train_tiny_llama(bool bf16, std::vector<DType>* state_dtypes = nullptr) {
  io::LlamaConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = 97;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  models::LlamaForCausalLM model(c, 7, Device{"cpu"});
  optim::AdamW opt(model.parameters(), {.lr = 3e-3});
  std::vector<int64_t> ids(2 * 24);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 31 + 5) % 97);
  const Tensor input = Tensor::from_vector(ids, {2, 24});
  std::vector<double> losses;
  for (int step = 0; step < 5; ++step) {
    Tensor loss;
    {
      std::optional<AutocastGuard> autocast;
      if (bf16) autocast.emplace(DType::BF16);
      loss = model.forward(input, {}, input).loss;
    }
    loss.backward();
    if (state_dtypes && step == 0)
      for (Tensor* p : model.parameters()) {
        state_dtypes->push_back(p->dtype());
        state_dtypes->push_back(p->grad().dtype());
      }
    opt.step();
    opt.zero_grad();
    losses.push_back(loss.item());
  }
  return losses;
}

TEST(Autocast, TinyLlamaTrainsLikeF32WithF32MasterState) {
  std::vector<DType> dtypes;
  const std::vector<double> f32 = train_tiny_llama(false), half = train_tiny_llama(true, &dtypes);
  for (DType dt : dtypes) EXPECT_EQ(dt, DType::F32);  // parameters and gradients
  for (size_t s = 0; s < f32.size(); ++s) {
    EXPECT_NEAR(half[s], f32[s], 2e-2 * f32[s]) << "step " << s;
    EXPECT_NE(half[s], f32[s]) << "step " << s << ": autocast changed nothing";
  }
  EXPECT_LT(half.back(), half.front() - 0.1);  // and it learns
}

}  // namespace
}  // namespace solo
