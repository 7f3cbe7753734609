// RoPE frequency schemes against the inverse frequencies transformers 5.2x computes
// (ROPE_INIT_FUNCTIONS in modeling_rope_utils.py, head_dim 16, max_position_embeddings 64),
// and the Rope op's attention factor and its VJP on the reference and cpu backends.
#include <gtest/gtest.h>

#include <cmath>

#include "op_check.h"
#include "solo/core/rope_scaling.h"
#include "solo/ir/ops.h"

namespace solo {
namespace {

// float32 results of torch; ours follow the same operation order, so 1e-6 relative is loose.
void expect_freqs(const RopeScaling& s, int64_t seq_len, const std::vector<double>& want) {
  const std::vector<float> got = rope_inv_freq(s, 16, seq_len);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-6 * want[i]) << "frequency " << i;
}

TEST(RopeScaling, LinearDividesByFactor) {
  expect_freqs({.type = RopeType::Linear, .factor = 2.5}, 16,
               {0.400000006, 0.1264911, 0.0399999991, 0.0126491114, 0.00399999972, 0.00126491114,
                0.000400000019, 0.000126491112});
}

TEST(RopeScaling, DynamicGrowsTheBaseOnlyPastTheTrainedLength) {
  const RopeScaling s{
      .type = RopeType::Dynamic, .factor = 2.0, .original_max_position_embeddings = 64};
  expect_freqs(s, 100,
               {1, 0.283945143, 0.0806248412, 0.0228930302, 0.00650036521, 0.001845747,
                0.000524090894, 0.000148813066});
  EXPECT_EQ(rope_inv_freq(s, 16, 64), rope_inv_freq(RopeScaling{}, 16, 64));
  EXPECT_NE(rope_inv_freq(s, 16, 65), rope_inv_freq(RopeScaling{}, 16, 65));
}

TEST(RopeScaling, Llama3KeepsShortScalesLongAndBlendsBetween) {
  expect_freqs({.type = RopeType::Llama3,
                .factor = 8.0,
                .original_max_position_embeddings = 64,
                .low_freq_factor = 1.0,
                .high_freq_factor = 4.0},
               16,
               {1, 0.244384587, 0.0130422562, 0.00395284733, 0.00124999997, 0.000395284733,
                0.000125000006, 3.95284733e-05});
}

TEST(RopeScaling, YarnRampsBetweenInterpolationAndExtrapolation) {
  expect_freqs({.type = RopeType::Yarn, .factor = 4.0, .original_max_position_embeddings = 64}, 16,
               {1, 0.237170815, 0.049999997, 0.00790569466, 0.00249999994, 0.000790569466,
                0.000250000012, 7.90569466e-05});
  expect_freqs({.type = RopeType::Yarn,
                .factor = 4.0,
                .original_max_position_embeddings = 64,
                .beta_fast = 16,
                .beta_slow = 2,
                .truncate = false},
               16,
               {1, 0.14849025, 0.0250000004, 0.00790569466, 0.00249999994, 0.000790569466,
                0.000250000012, 7.90569466e-05});
  EXPECT_NEAR(yarn_attention_factor(4.0, 0, 0), 1.138629436111989, 1e-15);
  EXPECT_NEAR(yarn_attention_factor(4.0, 0.707, 1.0), 0.964326914892074, 1e-15);
}

TEST(RopeScaling, AttrsRoundTrip) {
  for (const RopeScaling& s :
       {RopeScaling{.theta = 500000}, RopeScaling{.type = RopeType::Linear, .factor = 2},
        RopeScaling{.type = RopeType::Dynamic, .factor = 3, .original_max_position_embeddings = 9},
        RopeScaling{.type = RopeType::Llama3,
        .factor = 8,
        .original_max_position_embeddings = 8192,
        .low_freq_factor = 2,
        .high_freq_factor = 5},
        RopeScaling{.type = RopeType::Yarn,
        .factor = 4,
        .original_max_position_embeddings = 4096,
        .beta_fast = 16,
        .beta_slow = 2,
        .truncate = false,
        .attention_factor = 1.2}}) {
    Attrs a;
    set_rope_attrs(a, s);
    EXPECT_EQ(rope_scaling_from_attrs(a), s) << a.str();
  }
}

// The attention factor scales the output and, through the VJP, the gradient.
test::Builder scaled_rope(bool inverse) {
  return [inverse](ir::Graph& g, const std::vector<ir::ValueId>& in) {
    const RopeScaling s{.type = RopeType::Yarn,
                        .factor = 4.0,
                        .original_max_position_embeddings = 4,
                        .attention_factor = 1.25};
    return std::vector<ir::ValueId>{ir::rope(g, in[0], s, inverse)};
  };
}

TEST(RopeScaling, AttentionFactorScalesTheRotation) {
  // t = 0 is no rotation, so the output there is exactly 1.25 x.
  const auto x = test::random_tensor({1, 3, 2, 8}, DType::F64, 61);
  const auto out = test::run_graph("reference", {x}, scaled_rope(false));
  for (size_t i = 0; i < 16; ++i) EXPECT_NEAR(out[0].values[i], 1.25 * x.values[i], 1e-15);
  test::expect_matches_reference("cpu", {test::with_dtype(x, DType::F32)}, scaled_rope(false), 1e-5,
                                 1e-6);
  test::expect_gradients_match_finite_differences({x}, scaled_rope(false), {0}, 1e-6, 1e-8);
  test::expect_gradients_match_finite_differences({x}, scaled_rope(true), {0}, 1e-6, 1e-8);
}

}  // namespace
}  // namespace solo
