// Attention and AttentionBackward: hand values on the reference backend, the flash-style
// cpu kernels against the reference, f64 finite-difference gradients and shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "op_check.h"
#include "solo/backend/backend.h"
#include "solo/core/error.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"

namespace solo::test {
namespace {

using ir::Graph;
using ir::kNoValue;
using ir::ValueId;

constexpr double kInf = std::numeric_limits<double>::infinity();

// f32 cpu (float accumulation, online softmax) vs reference (double accumulation).
constexpr double kRtol32 = 1e-4, kAtol32 = 1e-5;
constexpr double kRtol64 = 1e-10, kAtol64 = 1e-12;

// Builds attention over in = (q, k, v[, mask]); returns {out, lse}. window > 0: sliding.
Builder attention_builder(double scale, bool causal, int64_t window = 0) {
  return [=](Graph& g, const std::vector<ValueId>& in) {
    const ValueId mask = in.size() > 3 ? in[3] : kNoValue;
    return ir::attention(g, in[0], in[1], in[2], mask, scale, causal, window);
  };
}

// Only `out` (lse is not differentiable), for gradient checks.
Builder attention_out_builder(double scale, bool causal, int64_t window = 0) {
  return [=](Graph& g, const std::vector<ValueId>& in) {
    const ValueId mask = in.size() > 3 ? in[3] : kNoValue;
    return std::vector<ValueId>{
        ir::attention(g, in[0], in[1], in[2], mask, scale, causal, window)[0]};
  };
}

// in = (q, k, v, dout[, mask]): forward, then the fused backward -> {dq, dk, dv}.
Builder backward_builder(double scale, bool causal, int64_t window = 0) {
  return [=](Graph& g, const std::vector<ValueId>& in) {
    const ValueId mask = in.size() > 4 ? in[4] : kNoValue;
    const auto fwd = ir::attention(g, in[0], in[1], in[2], mask, scale, causal, window);
    return ir::attention_backward(g, in[0], in[1], in[2], mask, fwd[0], fwd[1], in[3], scale,
                                  causal, window);
  };
}

struct Case {
  int64_t B, T, S, Hq, Hkv, D;
};

std::vector<HostTensor> qkv(const Case& c, DType dt, uint64_t seed, double range = 1.0) {
  return {random_tensor({c.B, c.T, c.Hq, c.D}, dt, seed, -range, range),
          random_tensor({c.B, c.S, c.Hkv, c.D}, dt, seed + 1, -range, range),
          random_tensor({c.B, c.S, c.Hkv, c.D}, dt, seed + 2, -range, range)};
}

// A [B, S] mask with about a quarter of the keys masked (deterministic), in dtype dt.
HostTensor padding_mask(int64_t B, int64_t S, DType dt) {
  std::vector<int64_t> m(static_cast<size_t>(B * S));
  for (int64_t i = 0; i < B * S; ++i) m[static_cast<size_t>(i)] = (i * 7 + 3) % 4 != 0;
  return int_tensor({B, S}, dt, m);
}

// ---- hand-computed values --------------------------------------------------------------------

TEST(Attention, HandValuesCausal) {
  // T = S = 2, D = 1, scale 1: query 0 sees only key 0, so out = v0 exactly, lse = q0 k0.
  const auto q = float_tensor({1, 2, 1, 1}, DType::F32, {1, 2});
  const auto k = float_tensor({1, 2, 1, 1}, DType::F32, {3, 4});
  const auto v = float_tensor({1, 2, 1, 1}, DType::F32, {10, 20});
  const double p1 = std::exp(8.0) / (std::exp(6.0) + std::exp(8.0));
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {q, k, v}, attention_builder(1.0, true)),
                  {{10, 10 * (1 - p1) + 20 * p1}, {3, 8 + std::log1p(std::exp(-2.0))}}, 1e-6, 1e-6);
  }
}

TEST(Attention, HandValuesSlidingWindow) {
  // T = S = 3, D = 1, scale 1. Window 1: each query sees only itself, so out = v exactly and
  // lse = q_t k_t. Window 2: query 2 sees keys 1 and 2 (not 0), query 1 keys 0 and 1.
  const auto q = float_tensor({1, 3, 1, 1}, DType::F32, {1, 2, 1});
  const auto k = float_tensor({1, 3, 1, 1}, DType::F32, {3, 4, 5});
  const auto v = float_tensor({1, 3, 1, 1}, DType::F32, {10, 20, 40});
  const auto lse2 = [](double a, double b) {
    return std::max(a, b) + std::log1p(std::exp(-std::abs(a - b)));
  };
  const auto mean2 = [](double sa, double sb, double va, double vb) {
    const double pb = 1 / (1 + std::exp(sa - sb));
    return va * (1 - pb) + vb * pb;
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {q, k, v}, attention_builder(1.0, true, 1)),
                  {{10, 20, 40}, {3, 8, 5}}, 1e-6, 1e-6);
    expect_values(run_graph(backend, {q, k, v}, attention_builder(1.0, true, 2)),
                  {{10, mean2(6, 8, 10, 20), mean2(4, 5, 20, 40)}, {3, lse2(6, 8), lse2(4, 5)}},
                  1e-6, 1e-6);
  }
}

TEST(Attention, HandValuesUniformScoresGiveMeanAndSdpaScale) {
  // q = 0: every score is 0, so out is the mean of v and lse = log S, whatever the scale.
  const auto q = float_tensor({1, 1, 1, 2}, DType::F32, {0, 0});
  const auto k = float_tensor({1, 3, 1, 2}, DType::F32, {1, 2, -3, 4, 5, -6});
  const auto v = float_tensor({1, 3, 1, 2}, DType::F32, {1, 10, 2, 20, 6, 60});
  // key 1 masked: mean of v0 and v2, lse = log 2.
  const auto mask = int_tensor({1, 3}, DType::I32, {1, 0, 1});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    const auto a = ir::attention(g, in[0], in[1], in[2], kNoValue, 0.3, false);
    const auto m = ir::attention(g, in[0], in[1], in[2], in[3], 0.3, false);
    return std::vector<ValueId>{a[0], a[1], m[0], m[1]};
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {q, k, v, mask}, build),
                  {{3, 30}, {std::log(3.0)}, {3.5, 35}, {std::log(2.0)}}, 1e-6, 1e-6);
  }
  // scaled_dot_product_attention uses scale 1/sqrt(D): scores q.k / sqrt(2).
  const auto q1 = float_tensor({1, 1, 1, 2}, DType::F64, {1, 1});
  const auto k1 = float_tensor({1, 2, 1, 2}, DType::F64, {1, 1, 0, 0});
  const auto v1 = float_tensor({1, 2, 1, 2}, DType::F64, {1, 0, 0, 1});
  Builder sdpa = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{
        ir::scaled_dot_product_attention(g, in[0], in[1], in[2], kNoValue, false)};
  };
  const double e = std::exp(2.0 / std::sqrt(2.0));
  expect_values(run_graph("reference", {q1, k1, v1}, sdpa), {{e / (e + 1), 1 / (e + 1)}}, 1e-12,
                1e-12);
}

TEST(Attention, HandValuesQueryWithNoVisibleKey) {
  // Causal with key 0 masked: query 0 sees nothing -> zeros and lse = -inf; query 1 sees key 1.
  const auto q = float_tensor({1, 2, 1, 2}, DType::F32, {1, 2, 3, 4});
  const auto k = float_tensor({1, 2, 1, 2}, DType::F32, {1, 1, 1, -1});
  const auto v = float_tensor({1, 2, 1, 2}, DType::F32, {5, 6, 7, 8});
  const auto mask = int_tensor({1, 2}, DType::Bool, {0, 1});
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {q, k, v, mask}, attention_builder(0.5, true)),
                  {{0, 0, 7, 8}, {-kInf, -0.5}}, 1e-6, 1e-6);
  }
}

TEST(AttentionBackward, HandValues) {
  // T = 1, S = 2, D = 2, scale 1, q = [1, 0], k0 = [1, 5], k1 = [1, -3]: equal scores, p = 1/2.
  // v0 = [1, 0], v1 = [3, 4], dO = [1, 0]: out = [2, 2], Delta = 2, dP = [1, 3],
  // dS = [-1/2, 1/2]; dq = dS k = [0, -4]; dk_j = dS_j q; dv_j = p_j dO = [1/2, 0].
  const auto q = float_tensor({1, 1, 1, 2}, DType::F32, {1, 0});
  const auto k = float_tensor({1, 2, 1, 2}, DType::F32, {1, 5, 1, -3});
  const auto v = float_tensor({1, 2, 1, 2}, DType::F32, {1, 0, 3, 4});
  const auto out = float_tensor({1, 1, 1, 2}, DType::F32, {2, 2});
  const auto lse = float_tensor({1, 1, 1}, DType::F32, {1 + std::log(2.0)});
  const auto dout = float_tensor({1, 1, 1, 2}, DType::F32, {1, 0});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return ir::attention_backward(g, in[0], in[1], in[2], kNoValue, in[3], in[4], in[5], 1.0,
                                  false);
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {q, k, v, out, lse, dout}, build),
                  {{0, -4}, {-0.5, 0, 0.5, 0}, {0.5, 0, 0.5, 0}}, 1e-6, 1e-6);
  }
}

// ---- cpu vs reference, forward -----------------------------------------------------------------

TEST(Attention, CpuMatchesReferenceCausal) {
  // T = 70 spans three query tiles and two key tiles, with ragged ends.
  const Case c{2, 70, 70, 3, 3, 16};
  expect_matches_reference("cpu", qkv(c, DType::F32, 10), attention_builder(0.25, true), kRtol32,
                           kAtol32);
  expect_matches_reference("cpu", qkv(c, DType::F64, 10), attention_builder(0.25, true), kRtol64,
                           kAtol64);
}

TEST(Attention, CpuMatchesReferenceCausalWithPaddingMask) {
  const Case c{2, 67, 67, 2, 2, 8};
  for (DType mdt : {DType::Bool, DType::I64, DType::F32}) {
    SCOPED_TRACE(dtype_name(mdt));
    auto in = qkv(c, DType::F32, 20);
    in.push_back(padding_mask(c.B, c.S, mdt));
    expect_matches_reference("cpu", in, attention_builder(0.4, true), kRtol32, kAtol32);
  }
}

TEST(Attention, CpuMatchesReferenceGroupedQuery) {
  const Case c{2, 33, 33, 4, 2, 32};
  auto in = qkv(c, DType::F32, 30);
  expect_matches_reference("cpu", in, attention_builder(0.18, true), kRtol32, kAtol32);
  in.push_back(padding_mask(c.B, c.S, DType::I32));
  expect_matches_reference("cpu", in, attention_builder(0.18, false), kRtol32, kAtol32);
}

TEST(Attention, CpuMatchesReferenceNonCausalTDiffersFromS) {
  const Case c{2, 37, 131, 6, 3, 16};  // S spans three key tiles
  auto in = qkv(c, DType::F32, 40, 2.0);
  expect_matches_reference("cpu", in, attention_builder(0.25, false), kRtol32, kAtol32);
  in.push_back(padding_mask(c.B, c.S, DType::Bool));
  expect_matches_reference("cpu", in, attention_builder(0.25, false), kRtol32, kAtol32);
}

TEST(Attention, CpuMatchesReferenceOddSizes) {
  const Case c{1, 37, 37, 5, 1, 16};
  expect_matches_reference("cpu", qkv(c, DType::F32, 50), attention_builder(0.25, true), kRtol32,
                           kAtol32);
  const Case d{3, 5, 7, 3, 3, 13};
  expect_matches_reference("cpu", qkv(d, DType::F32, 51), attention_builder(0.3, false), kRtol32,
                           kAtol32);
  expect_matches_reference("cpu", qkv(d, DType::F64, 51), attention_builder(0.3, false), kRtol64,
                           kAtol64);
}

TEST(Attention, CpuMatchesReferenceQueriesWithNoVisibleKey) {
  // Batch 0: keys 0..3 masked, so causal queries 0..3 see nothing (zeros, lse -inf). Batch 1:
  // every key masked, so non-causal queries see nothing at all.
  const Case c{2, 9, 9, 2, 1, 8};
  std::vector<int64_t> m(18, 1);
  for (int s = 0; s < 4; ++s) m[static_cast<size_t>(s)] = 0;
  for (int s = 9; s < 18; ++s) m[static_cast<size_t>(s)] = 0;
  auto in = qkv(c, DType::F32, 60);
  in.push_back(int_tensor({2, 9}, DType::I32, m));
  for (bool causal : {true, false}) {
    SCOPED_TRACE(causal);
    const auto ref = run_graph("reference", in, attention_builder(0.3, causal));
    for (int64_t i = 0; i < 2 * 9; ++i) {  // batch 1 out and lse (second half)
      EXPECT_EQ(ref[1].values[static_cast<size_t>(2 * 9 + i)], -kInf);
      for (int e = 0; e < 8; ++e)
        EXPECT_EQ(ref[0].values[static_cast<size_t>(9 * 16 + i * 8 + e)], 0);
    }
    expect_matches_reference("cpu", in, attention_builder(0.3, causal), kRtol32, kAtol32);
  }
}

// Sliding windows against the reference: smaller than a tile, a tile, larger than one but
// smaller than T, exactly T and beyond (which must equal plain causal attention bit for bit on
// the reference). T = 150 spans five query tiles and three key tiles, ragged at the end.
TEST(Attention, CpuMatchesReferenceSlidingWindow) {
  const Case c{2, 150, 150, 4, 2, 16};
  for (int64_t w : {1, 5, 32, 64, 71, 149, 150, 400}) {
    SCOPED_TRACE(w);
    auto in = qkv(c, DType::F32, 110);
    expect_matches_reference("cpu", in, attention_builder(0.25, true, w), kRtol32, kAtol32);
    in.push_back(padding_mask(c.B, c.S, DType::Bool));
    expect_matches_reference("cpu", in, attention_builder(0.25, true, w), kRtol32, kAtol32);
  }
  const Case d{1, 37, 37, 3, 1, 8};
  expect_matches_reference("cpu", qkv(d, DType::F64, 111), attention_builder(0.3, true, 6), kRtol64,
                           kAtol64);
}

TEST(Attention, SlidingWindowOfAtLeastTEqualsCausal) {
  const Case c{1, 20, 20, 2, 2, 4};
  auto in = qkv(c, DType::F64, 112);
  in.push_back(padding_mask(c.B, c.S, DType::I32));
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    const auto causal = run_graph(backend, in, attention_builder(0.5, true));
    for (int64_t w : {20, 21, 1000}) {
      const auto win = run_graph(backend, in, attention_builder(0.5, true, w));
      expect_values(win, {causal[0].values, causal[1].values}, 0, 0);
    }
    // A smaller window changes the late queries (they lose their first keys).
    const auto small = run_graph(backend, in, attention_builder(0.5, true, 4));
    EXPECT_NE(small[0].values, causal[0].values);
  }
}

// Window W: query t equals unmasked attention of q_t over keys t - W + 1 .. t alone.
TEST(Attention, SlidingWindowEqualsAttentionOverTheLastWKeys) {
  const Case c{1, 9, 9, 2, 1, 3};
  const int64_t W = 3;
  const auto in = qkv(c, DType::F64, 113);
  const auto win = run_graph("reference", in, attention_builder(0.8, true, W));
  for (int64_t t = 0; t < c.T; ++t) {
    SCOPED_TRACE(t);
    const int64_t s0 = std::max<int64_t>(0, t - W + 1), n = t - s0 + 1;
    auto slice = [&](const HostTensor& x, int64_t from, int64_t rows, int64_t h) {
      HostTensor r{{Shape({1, rows, h, c.D}), DType::F64}, {}};
      for (int64_t s = from; s < from + rows; ++s)
        for (int64_t e = 0; e < h * c.D; ++e)
          r.values.push_back(x.values[static_cast<size_t>(s * h * c.D + e)]);
      return r;
    };
    const auto one = run_graph(
        "reference",
        {slice(in[0], t, 1, c.Hq), slice(in[1], s0, n, c.Hkv), slice(in[2], s0, n, c.Hkv)},
        attention_builder(0.8, false));
    for (int64_t h = 0; h < c.Hq; ++h) {
      for (int64_t e = 0; e < c.D; ++e)
        EXPECT_NEAR(win[0].values[static_cast<size_t>((t * c.Hq + h) * c.D + e)],
                    one[0].values[static_cast<size_t>(h * c.D + e)], 1e-12);
      EXPECT_NEAR(win[1].values[static_cast<size_t>(h * c.T + t)],
                  one[1].values[static_cast<size_t>(h)], 1e-12);
    }
  }
}

// ---- gradients ---------------------------------------------------------------------------------

TEST(Attention, GradientsMatchFiniteDifferences) {
  const Case c{1, 3, 3, 2, 2, 3};  // 18 elements per input
  expect_gradients_match_finite_differences(
      qkv(c, DType::F64, 70), attention_out_builder(0.7, true), {0, 1, 2}, 1e-6, 1e-8);
  const Case nc{1, 2, 4, 2, 1, 3};  // non-causal, T != S, GQA
  expect_gradients_match_finite_differences(
      qkv(nc, DType::F64, 71), attention_out_builder(0.7, false), {0, 1, 2}, 1e-6, 1e-8);
}

TEST(Attention, GradientsMatchFiniteDifferencesWithMaskAndGroupedQuery) {
  // Hq = 4, Hkv = 2; key 0 masked, so causal query 0 sees nothing and gets zero gradient.
  const Case c{1, 3, 3, 4, 2, 2};
  auto in = qkv(c, DType::F64, 80);
  in.push_back(int_tensor({1, 3}, DType::Bool, {0, 1, 1}));
  expect_gradients_match_finite_differences(in, attention_out_builder(0.9, true), {0, 1, 2}, 1e-6,
                                            1e-8);
  in[3] = float_tensor({1, 3}, DType::F32, {1, 0, 1});  // float mask, non-causal
  expect_gradients_match_finite_differences(in, attention_out_builder(0.9, false), {0, 1, 2}, 1e-6,
                                            1e-8);
}

TEST(Attention, GradientsMatchFiniteDifferencesSlidingWindow) {
  const Case c{1, 5, 5, 2, 1, 3};
  for (int64_t w : {1, 2, 4}) {
    SCOPED_TRACE(w);
    auto in = qkv(c, DType::F64, 120 + static_cast<uint64_t>(w));
    expect_gradients_match_finite_differences(in, attention_out_builder(0.7, true, w), {0, 1, 2},
                                              1e-6, 1e-8);
    // Key 1 masked: with window 1, query 1 sees nothing (zero gradient).
    in.push_back(int_tensor({1, 5}, DType::Bool, {1, 0, 1, 1, 1}));
    expect_gradients_match_finite_differences(in, attention_out_builder(0.7, true, w), {0, 1, 2},
                                              1e-6, 1e-8);
  }
}

TEST(AttentionBackward, CpuMatchesReferenceSlidingWindow) {
  const Case c{2, 150, 150, 4, 2, 16};
  for (int64_t w : {1, 7, 32, 64, 100, 150}) {
    SCOPED_TRACE(w);
    auto in = qkv(c, DType::F32, 130);
    in.push_back(random_tensor({c.B, c.T, c.Hq, c.D}, DType::F32, 133));  // dout
    expect_matches_reference("cpu", in, backward_builder(0.3, true, w), 2e-4, 2e-5);
    in.push_back(padding_mask(c.B, c.S, DType::I32));
    expect_matches_reference("cpu", in, backward_builder(0.3, true, w), 2e-4, 2e-5);
  }
  const Case d{1, 70, 70, 2, 2, 8};
  auto in = qkv(d, DType::F64, 134);
  in.push_back(random_tensor({d.B, d.T, d.Hq, d.D}, DType::F64, 135));
  expect_matches_reference("cpu", in, backward_builder(0.3, true, 9), kRtol64, kAtol64);
}

TEST(AttentionBackward, CpuMatchesReference) {
  struct Run {
    Case c;
    bool causal, mask;
    DType dt;
  };
  for (const Run& r : {Run{{2, 70, 70, 4, 2, 16}, true, false, DType::F32},
                       Run{{2, 67, 67, 2, 2, 8}, true, true, DType::F32},
                       Run{{2, 37, 131, 6, 3, 16}, false, true, DType::F32},
                       Run{{1, 37, 37, 3, 1, 16}, true, true, DType::F64},
                       Run{{2, 9, 9, 2, 1, 8}, true, true, DType::F32}}) {
    SCOPED_TRACE(r.c.T);
    auto in = qkv(r.c, r.dt, 90);
    in.push_back(random_tensor({r.c.B, r.c.T, r.c.Hq, r.c.D}, r.dt, 93));  // dout
    if (r.mask) {
      in.push_back(padding_mask(r.c.B, r.c.S, DType::I32));
      if (r.c.T == 9) in.back().values[0] = 0;  // query 0 of batch 0 sees no key
    }
    const bool f32 = r.dt == DType::F32;
    expect_matches_reference("cpu", in, backward_builder(0.3, r.causal), f32 ? 2e-4 : kRtol64,
                             f32 ? 2e-5 : kAtol64);
  }
}

TEST(Attention, CpuGradientsMatchReference) {
  // The loss around the op needs the cpu elementwise kernels (Mul, Sum, ...), which another
  // group provides; without them only the fused backward test above can run.
  const auto cpu = make_backend("cpu");
  for (OpKind op : {OpKind::Full, OpKind::Add, OpKind::Mul, OpKind::Sum, OpKind::BroadcastTo})
    if (!cpu->has_kernel(op)) GTEST_SKIP() << "cpu has no " << op_name(op) << " kernel yet";
  const Case c{2, 41, 41, 4, 2, 16};
  auto in = qkv(c, DType::F32, 100);
  in.push_back(padding_mask(c.B, c.S, DType::Bool));
  expect_gradients_match_reference("cpu", in, attention_out_builder(0.25, true), {0, 1, 2}, 2e-4,
                                   2e-5);
}

// ---- errors ------------------------------------------------------------------------------------

void expect_error(const std::function<void(Graph&)>& build, const std::vector<std::string>& parts) {
  Graph g;
  try {
    build(g);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

TEST(Attention, ShapeErrors) {
  auto in = [](Graph& g, const Shape& s) { return g.input({s, DType::F32}, "x"); };
  // Hq not divisible by Hkv.
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {1, 4, 3, 8}), in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 8}), kNoValue,
                      1.0, true);
      },
      {"Attention:", "multiple", "f32[1, 4, 3, 8]", "f32[1, 4, 2, 8]"});
  // Head dim mismatch.
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 4}), in(g, {1, 4, 2, 4}), kNoValue,
                      1.0, false);
      },
      {"Attention:", "head dim", "f32[1, 4, 2, 8]", "f32[1, 4, 2, 4]"});
  // Causal with T != S.
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {1, 3, 2, 8}), in(g, {1, 5, 2, 8}), in(g, {1, 5, 2, 8}), kNoValue,
                      1.0, true);
      },
      {"Attention:", "causal", "f32[1, 3, 2, 8]", "f32[1, 5, 2, 8]"});
  // A window needs causal attention and is not negative.
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 8}), kNoValue,
                      1.0, false, 2);
      },
      {"Attention:", "window 2", "causal"});
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 8}), kNoValue,
                      1.0, true, -1);
      },
      {"Attention:", "window -1"});
  // Mask shape wrong.
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {2, 5, 2, 8}), in(g, {2, 5, 2, 8}), in(g, {2, 5, 2, 8}),
                      g.input({{5, 2}, DType::Bool}, "m"), 1.0, true);
      },
      {"Attention:", "key_mask", "f32[2, 5, 2, 8]", "bool[5, 2]"});
  // k and v differ; rank wrong; dtypes differ.
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 8}), in(g, {1, 5, 2, 8}), kNoValue,
                      1.0, false);
      },
      {"Attention:", "f32[1, 4, 2, 8]", "f32[1, 5, 2, 8]"});
  expect_error(
      [&](Graph& g) {
        ir::scaled_dot_product_attention(g, in(g, {4, 2, 8}), in(g, {4, 2, 8}), in(g, {4, 2, 8}));
      },
      {"Attention:", "f32[4, 2, 8]"});
  expect_error(
      [&](Graph& g) {
        ir::attention(g, in(g, {1, 4, 2, 8}), g.input({{1, 4, 2, 8}, DType::F64}, "k"),
                      in(g, {1, 4, 2, 8}), kNoValue, 1.0, false);
      },
      {"Attention:", "dtypes", "f64[1, 4, 2, 8]"});
  // Backward: lse of the wrong shape.
  expect_error(
      [&](Graph& g) {
        const ValueId q = in(g, {1, 4, 2, 8});
        ir::attention_backward(g, q, in(g, {1, 4, 2, 8}), in(g, {1, 4, 2, 8}), kNoValue, q,
                               in(g, {1, 4, 2}), q, 1.0, true);
      },
      {"AttentionBackward:", "lse", "f32[1, 4, 2]"});
}

// No window sets no attr, so graphs without one hash as they did; a window is in the hash.
TEST(Attention, WindowAttrOnlyWhenSet) {
  auto build = [](int64_t window) {
    Graph g;
    const ValueId q = g.input({{1, 4, 2, 8}, DType::F32}, "q");
    const auto a = ir::attention(g, q, q, q, kNoValue, 1.0, true, window);
    ir::attention_backward(g, q, q, q, kNoValue, a[0], a[1], a[0], 1.0, true, window);
    return g;
  };
  const Graph none = build(0), two = build(2), three = build(3);
  EXPECT_FALSE(none.producer(ValueId{1}).attrs.has("window"));
  EXPECT_EQ(two.producer(ValueId{1}).attrs.i("window"), 2);
  EXPECT_NE(none.structural_hash(), two.structural_hash());
  EXPECT_NE(two.structural_hash(), three.structural_hash());
  Graph plain;
  const ValueId q = plain.input({{1, 4, 2, 8}, DType::F32}, "q");
  const auto a = ir::attention(plain, q, q, q, kNoValue, 1.0, true);
  ir::attention_backward(plain, q, q, q, kNoValue, a[0], a[1], a[0], 1.0, true);
  EXPECT_EQ(plain.structural_hash(), none.structural_hash());
}

TEST(Attention, OutputTypesAndHalfOperands) {
  Graph g;
  const ValueId q = g.input({{2, 5, 4, 8}, DType::F64}, "q");
  const ValueId k = g.input({{2, 7, 2, 8}, DType::F64}, "k");
  const auto a = ir::attention(g, q, k, k, kNoValue, 1.0, false);
  EXPECT_EQ(g.shape(a[0]), Shape({2, 5, 4, 8}));
  EXPECT_EQ(g.shape(a[1]), Shape({2, 4, 5}));
  EXPECT_EQ(g.dtype(a[1]), DType::F64);
  // bf16 operands give a bf16 output and an f32 lse; host kernels compute them in f32 on
  // the rounded operands and round the output.
  const auto x = random_tensor({1, 6, 2, 4}, DType::BF16, 1);
  HostTensor rounded = with_dtype(x, DType::F32);
  for (double& v : rounded.values) v = bf16_to_f32(f32_to_bf16(static_cast<float>(v)));
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    const auto half = run_graph(backend, {x, x, x}, attention_builder(1.0, true));
    const auto f32 = run_graph(backend, {rounded, rounded, rounded}, attention_builder(1.0, true));
    ASSERT_EQ(half[0].type.dtype, DType::BF16);
    ASSERT_EQ(half[1].type.dtype, DType::F32);
    std::vector<double> want;
    for (double v : f32[0].values) want.push_back(bf16_to_f32(f32_to_bf16(static_cast<float>(v))));
    expect_values({half[0]}, {want}, 0, 0);
    expect_values({half[1]}, {f32[1].values}, 0, 0);
  }
}

}  // namespace
}  // namespace solo::test
