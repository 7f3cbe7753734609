// Fused nn ops (Softmax, RmsNorm, LayerNorm, Rope, CrossEntropy and their Backward ops):
// hand-computed values on the reference backend, cpu vs reference, finite-difference
// gradients, cpu backward vs reference, builder shape errors and run-time label errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "op_check.h"
#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::test {
namespace {

using ir::Graph;
using ir::ValueId;

const double kLn2 = std::log(2.0), kLn3 = std::log(3.0);

// cpu vs reference tolerances: f32 kernels differ from the double-accumulating reference
// by a few ulps per element.
constexpr double kRtol32 = 1e-5, kAtol32 = 1e-6;
constexpr double kRtol64 = 1e-12, kAtol64 = 1e-13;
// Finite differences in f64 (step 1e-6): truncation ~1e-12, cancellation ~1e-10.
constexpr double kFdRtol = 1e-6, kFdAtol = 1e-8;

// Expects build to throw solo::Error whose message contains every piece in `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected solo::Error";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << p << "\"";
  }
}

// ---- Softmax ------------------------------------------------------------------------------

Builder softmax_on(int axis) {
  return [axis](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::softmax(g, in[0], axis)};
  };
}

TEST(Softmax, HandValues) {
  // softmax [0, ln 2, ln 3] = [1, 2, 3] / 6; shifting by 1000 changes nothing (stability).
  const auto x = float_tensor({2, 3}, DType::F64, {0, kLn2, kLn3, 1000, 1000 + kLn2, 1000 + kLn3});
  expect_values(run_graph("reference", {x}, softmax_on(-1)),
                {{1. / 6, 2. / 6, 3. / 6, 1. / 6, 2. / 6, 3. / 6}}, 1e-12, 0);
  // f32 [1000, 1001, 1002] (exact in f32) = [1, e, e^2] / (1 + e + e^2), on both backends.
  const double e = std::exp(1.0), z = 1 + e + e * e;
  const auto big = float_tensor({1, 3}, DType::F32, {1000, 1001, 1002});
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {big}, softmax_on(-1)), {{1 / z, e / z, e * e / z}}, 1e-6, 0);
  }
  // A masked (-inf) entry gets exactly 0 on both backends: [0, -inf, ln 3] -> [1/4, 0, 3/4].
  const auto masked =
      float_tensor({1, 3}, DType::F32, {0, -std::numeric_limits<double>::infinity(), kLn3});
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {masked}, softmax_on(-1)), {{0.25, 0, 0.75}}, 1e-6, 0);
  }
  // Along axis 0: column 0 is [0, ln 3] -> [1/4, 3/4], column 1 is [0, 0] -> [1/2, 1/2].
  const auto x0 = float_tensor({2, 2}, DType::F64, {0, 0, kLn3, 0});
  expect_values(run_graph("reference", {x0}, softmax_on(0)), {{0.25, 0.5, 0.75, 0.5}}, 1e-14, 0);
}

TEST(Softmax, BackwardHandValues) {
  // y = [1/2, 1/2], dy = [1, 0]: sum(dy * y) = 1/2, dx = y * (dy - 1/2) = [1/4, -1/4].
  const auto y = float_tensor({1, 2}, DType::F64, {0.5, 0.5});
  const auto dy = float_tensor({1, 2}, DType::F64, {1, 0});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::softmax_backward(g, in[0], in[1], -1)};
  };
  expect_values(run_graph("reference", {y, dy}, build), {{0.25, -0.25}}, 1e-14, 0);
}

TEST(Softmax, CpuMatchesReference) {
  const auto x = random_tensor({7, 131}, DType::F32, 11, -20, 20);
  expect_matches_reference("cpu", {x}, softmax_on(-1), kRtol32, kAtol32);
  const auto x3 = random_tensor({3, 5, 7}, DType::F32, 12, -5, 5);
  for (int axis : {0, 1, 2})
    expect_matches_reference("cpu", {x3}, softmax_on(axis), kRtol32, kAtol32);
  expect_matches_reference("cpu", {with_dtype(x3, DType::F64)}, softmax_on(1), kRtol64, kAtol64);
  const auto y = random_tensor({5, 33}, DType::F32, 13, 0, 1);
  const auto dy = random_tensor({5, 33}, DType::F32, 14);
  Builder back = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::softmax_backward(g, in[0], in[1], -1),
                                ir::softmax_backward(g, in[0], in[1], 0)};
  };
  expect_matches_reference("cpu", {y, dy}, back, kRtol32, kAtol32);
}

TEST(Softmax, GradientsMatchFiniteDifferences) {
  const auto x = random_tensor({3, 5}, DType::F64, 15, -2, 2);
  expect_gradients_match_finite_differences({x}, softmax_on(-1), {0}, kFdRtol, kFdAtol);
  expect_gradients_match_finite_differences({x}, softmax_on(0), {0}, kFdRtol, kFdAtol);
}

TEST(Softmax, CpuGradientsMatchReference) {
  const auto x = random_tensor({9, 37}, DType::F32, 16, -3, 3);
  expect_gradients_match_reference("cpu", {x}, softmax_on(-1), {0}, kRtol32, kAtol32);
  const auto x3 = random_tensor({3, 5, 7}, DType::F32, 17, -3, 3);
  expect_gradients_match_reference("cpu", {x3}, softmax_on(1), {0}, kRtol32, kAtol32);
}

TEST(Softmax, BuilderErrors) {
  Graph g;
  const ValueId x = g.input({{2, 3}, DType::F32}, "x");
  const ValueId dy = g.input({{3, 2}, DType::F32}, "dy");
  expect_error([&] { ir::softmax(g, x, 2); }, {"Softmax", "axis 2", "f32[2, 3]"});
  expect_error([&] { ir::softmax_backward(g, x, dy, -1); },
               {"SoftmaxBackward", "f32[2, 3]", "f32[3, 2]"});
  const ValueId ids = g.input({{2, 3}, DType::I32}, "ids");
  expect_error([&] { ir::softmax(g, ids); }, {"Softmax", "i32[2, 3]"});
}

// ---- RmsNorm ------------------------------------------------------------------------------

Builder rms_norm_with(double eps) {
  return [eps](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::rms_norm(g, in[0], in[1], eps)};
  };
}

Builder rms_norm_backward_with(double eps) {
  return [eps](Graph& g, const std::vector<ValueId>& in) {
    return ir::rms_norm_backward(g, in[0], in[1], in[2], eps);
  };
}

TEST(RmsNorm, HandValues) {
  // [3, 4]: mean(x^2) = 12.5. [1, -1]: eps = 3 sits inside the sqrt as in PyTorch, so
  // rstd = 1 / sqrt(1 + 3) = 1/2 (not 1 / (1 + 3)).
  const auto x = float_tensor({2, 2}, DType::F32, {3, 4, 1, -1});
  const auto w = float_tensor({2}, DType::F32, {1, 2});
  const double r = std::sqrt(12.5);
  expect_values(run_graph("reference", {x, w}, rms_norm_with(0)), {{3 / r, 8 / r, 1, -2}}, 1e-6, 0);
  const auto x1 = float_tensor({1, 2}, DType::F32, {1, -1});
  expect_values(run_graph("reference", {x1, w}, rms_norm_with(3)), {{0.5, -1}}, 1e-6, 0);
}

TEST(RmsNorm, BackwardHandValues) {
  // w = [2, 1], eps = 0. Row 0: x = [1, 1], rstd 1, xh = [1, 1], dy = [1, 0], g = [2, 0],
  // mean(g * xh) = 1 -> dx = [1, -1]. Row 1: x = [2, 2], rstd 1/2, xh = [1, 1], dy = [0, 1],
  // g = [0, 1], mean = 1/2 -> dx = 1/2 * ([0, 1] - [1/2, 1/2]) = [-1/4, 1/4].
  // dw = [1, 0] * xh + [0, 1] * xh = [1, 1] (summed over rows).
  const auto x = float_tensor({2, 2}, DType::F64, {1, 1, 2, 2});
  const auto w = float_tensor({2}, DType::F64, {2, 1});
  const auto dy = float_tensor({2, 2}, DType::F64, {1, 0, 0, 1});
  expect_values(run_graph("reference", {x, w, dy}, rms_norm_backward_with(0)),
                {{1, -1, -0.25, 0.25}, {1, 1}}, 1e-14, 1e-15);
}

TEST(RmsNorm, CpuMatchesReference) {
  const auto x = random_tensor({3, 5, 67}, DType::F32, 21, -2, 2);
  const auto w = random_tensor({67}, DType::F32, 22);
  const auto dy = random_tensor({3, 5, 67}, DType::F32, 23);
  expect_matches_reference("cpu", {x, w}, rms_norm_with(1e-5), kRtol32, kAtol32);
  // dw sums 15 rows: allow the accumulated f32 rounding.
  expect_matches_reference("cpu", {x, w, dy}, rms_norm_backward_with(1e-5), 1e-4, 1e-5);
  expect_matches_reference("cpu", {with_dtype(x, DType::F64), with_dtype(w, DType::F64)},
                           rms_norm_with(1e-6), kRtol64, kAtol64);
  // Many rows so every thread gets a share of dw.
  const auto xl = random_tensor({301, 19}, DType::F64, 24);
  const auto wl = random_tensor({19}, DType::F64, 25);
  const auto dyl = random_tensor({301, 19}, DType::F64, 26);
  expect_matches_reference("cpu", {xl, wl, dyl}, rms_norm_backward_with(1e-6), 1e-10, 1e-11);
}

TEST(RmsNorm, GradientsMatchFiniteDifferences) {
  const auto x = random_tensor({2, 3, 5}, DType::F64, 27);
  const auto w = random_tensor({5}, DType::F64, 28);
  expect_gradients_match_finite_differences({x, w}, rms_norm_with(1e-5), {0, 1}, kFdRtol, kFdAtol);
}

TEST(RmsNorm, CpuGradientsMatchReference) {
  const auto x = random_tensor({4, 7, 33}, DType::F32, 29);
  const auto w = random_tensor({33}, DType::F32, 30);
  expect_gradients_match_reference("cpu", {x, w}, rms_norm_with(1e-5), {0, 1}, 1e-4, 1e-5);
}

TEST(RmsNorm, BuilderErrors) {
  Graph g;
  const ValueId x = g.input({{2, 3}, DType::F32}, "x");
  const ValueId w4 = g.input({{4}, DType::F32}, "w4");
  const ValueId w64 = g.input({{3}, DType::F64}, "w64");
  const ValueId w = g.input({{3}, DType::F32}, "w");
  const ValueId dy = g.input({{2, 4}, DType::F32}, "dy");
  expect_error([&] { ir::rms_norm(g, x, w4, 1e-5); }, {"RmsNorm", "f32[2, 3]", "f32[4]"});
  expect_error([&] { ir::rms_norm(g, x, w64, 1e-5); }, {"RmsNorm", "f32[2, 3]", "f64[3]"});
  expect_error([&] { ir::rms_norm_backward(g, x, w, dy, 1e-5); },
               {"RmsNormBackward", "f32[2, 3]", "f32[2, 4]"});
}

// ---- LayerNorm ----------------------------------------------------------------------------

Builder layer_norm_with(double eps) {
  return [eps](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::layer_norm(g, in[0], in[1], in[2], eps)};
  };
}

Builder layer_norm_backward_with(double eps) {
  return [eps](Graph& g, const std::vector<ValueId>& in) {
    return ir::layer_norm_backward(g, in[0], in[1], in[2], eps);
  };
}

TEST(LayerNorm, HandValues) {
  // [1, 3]: mean 2, biased var 1 (PyTorch; the unbiased var would be 2), xh = [-1, 1],
  // y = xh * [2, 3] + [0.5, -1] = [-1.5, 2]. [0, 2] with eps = 3: rstd = 1 / sqrt(1 + 3).
  const auto x = float_tensor({1, 2}, DType::F32, {1, 3});
  const auto w = float_tensor({2}, DType::F32, {2, 3});
  const auto b = float_tensor({2}, DType::F32, {0.5, -1});
  expect_values(run_graph("reference", {x, w, b}, layer_norm_with(0)), {{-1.5, 2}}, 1e-6, 0);
  const auto x2 = float_tensor({1, 2}, DType::F32, {0, 2});
  expect_values(run_graph("reference", {x2, w, b}, layer_norm_with(3)), {{-0.5, 0.5}}, 1e-6, 0);
}

TEST(LayerNorm, BackwardHandValues) {
  // w = 1, eps = 0. Row 0: x = [-1, -1, 1, 1] (mean 0, var 1, xh = x), dy = [1, 0, 0, 0]:
  // mean(g) = 1/4, mean(g * xh) = -1/4, dx = dy - 1/4 + xh / 4 = [1/2, -1/2, 0, 0].
  // Row 1: x = [0, 0, 4, 4] (mean 2, var 4, rstd 1/2, xh = [-1, -1, 1, 1]), dy = [0, 0, 0, 2]:
  // mean(g) = 1/2, mean(g * xh) = 1/2, dx = 1/2 * (dy - 1/2 - xh / 2) = [0, 0, -1/2, 1/2].
  // dw = sum dy * xh = [-1, 0, 0, 2]; db = sum dy = [1, 0, 0, 2].
  const auto x = float_tensor({2, 4}, DType::F64, {-1, -1, 1, 1, 0, 0, 4, 4});
  const auto w = float_tensor({4}, DType::F64, {1, 1, 1, 1});
  const auto dy = float_tensor({2, 4}, DType::F64, {1, 0, 0, 0, 0, 0, 0, 2});
  expect_values(run_graph("reference", {x, w, dy}, layer_norm_backward_with(0)),
                {{0.5, -0.5, 0, 0, 0, 0, -0.5, 0.5}, {-1, 0, 0, 2}, {1, 0, 0, 2}}, 1e-14, 1e-15);
}

TEST(LayerNorm, CpuMatchesReference) {
  const auto x = random_tensor({3, 5, 67}, DType::F32, 31, -2, 3);
  const auto w = random_tensor({67}, DType::F32, 32);
  const auto b = random_tensor({67}, DType::F32, 33);
  const auto dy = random_tensor({3, 5, 67}, DType::F32, 34);
  expect_matches_reference("cpu", {x, w, b}, layer_norm_with(1e-5), kRtol32, 1e-5);
  expect_matches_reference("cpu", {x, w, dy}, layer_norm_backward_with(1e-5), 1e-4, 1e-5);
  const auto xl = random_tensor({301, 19}, DType::F64, 35);
  const auto wl = random_tensor({19}, DType::F64, 36);
  const auto dyl = random_tensor({301, 19}, DType::F64, 37);
  expect_matches_reference("cpu", {xl, wl, dyl}, layer_norm_backward_with(1e-6), 1e-10, 1e-11);
}

TEST(LayerNorm, GradientsMatchFiniteDifferences) {
  const auto x = random_tensor({2, 3, 5}, DType::F64, 38);
  const auto w = random_tensor({5}, DType::F64, 39);
  const auto b = random_tensor({5}, DType::F64, 40);
  expect_gradients_match_finite_differences({x, w, b}, layer_norm_with(1e-5), {0, 1, 2}, kFdRtol,
                                            kFdAtol);
}

TEST(LayerNorm, CpuGradientsMatchReference) {
  const auto x = random_tensor({4, 7, 33}, DType::F32, 41);
  const auto w = random_tensor({33}, DType::F32, 42);
  const auto b = random_tensor({33}, DType::F32, 43);
  expect_gradients_match_reference("cpu", {x, w, b}, layer_norm_with(1e-5), {0, 1, 2}, 1e-4, 1e-5);
}

TEST(LayerNorm, BuilderErrors) {
  Graph g;
  const ValueId x = g.input({{2, 3}, DType::F32}, "x");
  const ValueId w = g.input({{3}, DType::F32}, "w");
  const ValueId b5 = g.input({{5}, DType::F32}, "b5");
  const ValueId dy = g.input({{3, 3}, DType::F32}, "dy");
  expect_error([&] { ir::layer_norm(g, x, w, b5, 1e-5); },
               {"LayerNorm", "f32[2, 3]", "f32[3]", "f32[5]"});
  expect_error([&] { ir::layer_norm_backward(g, x, w, dy, 1e-5); },
               {"LayerNormBackward", "f32[2, 3]", "f32[3, 3]"});
}

// ---- Rope ---------------------------------------------------------------------------------

Builder rope_with(double theta, bool inverse) {
  return [theta, inverse](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::rope(g, in[0], theta, inverse)};
  };
}

TEST(Rope, HandValues) {
  // D = 2 (f = 1): t = 0 is the identity; t = 1 rotates (x0, x1) by 1 radian.
  const auto x = float_tensor({1, 2, 1, 2}, DType::F64, {1, 2, 1, 2});
  const double c = std::cos(1.0), s = std::sin(1.0);
  expect_values(run_graph("reference", {x}, rope_with(10000, false)),
                {{1, 2, c - 2 * s, 2 * c + s}}, 1e-14, 1e-15);
  expect_values(run_graph("reference", {x}, rope_with(10000, true)), {{1, 2, c + 2 * s, 2 * c - s}},
                1e-14, 1e-15);
  // D = 4, theta = 100: pair (1, 3) has f = 100^(-2/4) = 0.1 (rotate-half pairs i, i + D/2,
  // not neighbours), rounded to float32 as transformers' inv_freq is. x = e1 at t = 1 ->
  // cos f at 1, sin f at 3.
  const auto x4 = float_tensor({1, 2, 1, 4}, DType::F64, {0, 1, 0, 0, 0, 1, 0, 0});
  const double f = static_cast<double>(0.1f);
  expect_values(run_graph("reference", {x4}, rope_with(100, false)),
                {{0, 1, 0, 0, 0, std::cos(f), 0, std::sin(f)}}, 1e-14, 1e-15);
}

TEST(Rope, CpuMatchesReference) {
  const auto x = random_tensor({2, 9, 3, 18}, DType::F32, 51);
  expect_matches_reference("cpu", {x}, rope_with(10000, false), kRtol32, kAtol32);
  expect_matches_reference("cpu", {x}, rope_with(500000, true), kRtol32, kAtol32);
  expect_matches_reference("cpu", {with_dtype(x, DType::F64)}, rope_with(10000, false), kRtol64,
                           kAtol64);
}

TEST(Rope, InverseUndoesRope) {
  const auto x = random_tensor({1, 5, 2, 6}, DType::F64, 52);
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::rope(g, ir::rope(g, in[0], 10000, false), 10000, true)};
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {x}, build), {x.values}, 1e-13, 1e-14);
  }
}

TEST(Rope, GradientsMatchFiniteDifferences) {
  const auto x = random_tensor({1, 3, 2, 8}, DType::F64, 53);
  expect_gradients_match_finite_differences({x}, rope_with(10, false), {0}, kFdRtol, kFdAtol);
  expect_gradients_match_finite_differences({x}, rope_with(10, true), {0}, kFdRtol, kFdAtol);
}

TEST(Rope, CpuGradientsMatchReference) {
  const auto x = random_tensor({2, 7, 3, 10}, DType::F32, 54);
  expect_gradients_match_reference("cpu", {x}, rope_with(10000, false), {0}, kRtol32, kAtol32);
}

TEST(Rope, BuilderErrors) {
  Graph g;
  const ValueId odd = g.input({{1, 2, 3, 5}, DType::F32}, "odd");
  const ValueId r3 = g.input({{2, 3, 4}, DType::F32}, "r3");
  expect_error([&] { ir::rope(g, odd, 10000); }, {"Rope", "even", "f32[1, 2, 3, 5]"});
  expect_error([&] { ir::rope(g, r3, 10000); }, {"Rope", "f32[2, 3, 4]"});
}

// ---- CrossEntropy -------------------------------------------------------------------------

Builder cross_entropy_with(int64_t ignore_index) {
  return [ignore_index](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::cross_entropy(g, in[0], in[1], ignore_index)};
  };
}

// dloss is an input so the backward op can be checked on its own.
Builder cross_entropy_backward_with(int64_t ignore_index) {
  return [ignore_index](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::cross_entropy_backward(g, in[0], in[1], in[2], ignore_index)};
  };
}

TEST(CrossEntropy, HandValues) {
  // Row 0: softmax [1, 2, 3] / 6, label 2 -> -log(1/2) = ln 2. Row 1: uniform, label 0 ->
  // ln 3. Row 2: ignored. Mean over the 2 kept rows.
  const auto logits = float_tensor({3, 3}, DType::F32, {0, kLn2, kLn3, 5, 5, 5, 1, 2, 3});
  for (DType lt : {DType::I32, DType::I64}) {
    const auto labels = int_tensor({3}, lt, {2, 0, -100});
    expect_values(run_graph("reference", {logits, labels}, cross_entropy_with(-100)),
                  {{(kLn2 + kLn3) / 2}}, 1e-6, 0);
  }
  // A custom ignore_index (here 0) drops row 1 instead.
  const auto labels = int_tensor({3}, DType::I64, {2, 0, 1});
  const double row2 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 2;
  expect_values(run_graph("reference", {logits, labels}, cross_entropy_with(0)),
                {{(kLn2 + row2) / 2}}, 1e-6, 0);
  // Large logits stay finite (the row max is subtracted).
  // [1000, 1001, 1002], label 2: log(1 + e + e^2) - 2 on both backends.
  const double e = std::exp(1.0);
  const auto big = float_tensor({1, 3}, DType::F32, {1000, 1001, 1002});
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(
        run_graph(backend, {big, int_tensor({1}, DType::I32, {2})}, cross_entropy_with(-100)),
        {{std::log(1 + e + e * e) - 2}}, 1e-6, 0);
  }
}

TEST(CrossEntropy, AllIgnoredIsNaN) {
  // PyTorch returns NaN (0 / 0) when every label is ignored.
  const auto logits = random_tensor({2, 4}, DType::F32, 61);
  const auto labels = int_tensor({2}, DType::I64, {-100, -100});
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    const auto out = run_graph(backend, {logits, labels}, cross_entropy_with(-100));
    EXPECT_TRUE(std::isnan(out[0].values[0]));
  }
}

TEST(CrossEntropy, OutputDtype) {
  Graph g;
  const ValueId labels = g.input({{2}, DType::I64}, "labels");
  const ValueId l32 = g.input({{2, 5}, DType::F32}, "l32");
  const ValueId l64 = g.input({{2, 5}, DType::F64}, "l64");
  const ValueId a = ir::cross_entropy(g, l32, labels);
  const ValueId b = ir::cross_entropy(g, l64, labels);
  EXPECT_EQ(g.dtype(a), DType::F32);
  EXPECT_EQ(g.dtype(b), DType::F64);
  EXPECT_EQ(g.shape(a), Shape{});
}

TEST(CrossEntropy, BackwardHandValues) {
  // dloss = 2, count = 2: row 0 (softmax [1, 2, 3] / 6, label 2) -> [1/6, 1/3, -1/2];
  // row 1 (uniform, label 0) -> [-2/3, 1/3, 1/3]; the ignored row 2 is zero.
  const auto logits = float_tensor({3, 3}, DType::F64, {0, kLn2, kLn3, 5, 5, 5, 1, 2, 3});
  const auto labels = int_tensor({3}, DType::I32, {2, 0, -100});
  const auto dloss = float_tensor({}, DType::F64, {2});
  expect_values(run_graph("reference", {logits, labels, dloss}, cross_entropy_backward_with(-100)),
                {{1. / 6, 1. / 3, -0.5, -2. / 3, 1. / 3, 1. / 3, 0, 0, 0}}, 1e-14, 1e-15);
}

TEST(CrossEntropy, CpuMatchesReference) {
  // A Llama-sized vocabulary row (V = 32000), with one ignored row.
  const auto logits = random_tensor({5, 32000}, DType::F32, 62, -8, 8);
  const auto labels = int_tensor({5}, DType::I64, {0, 31999, -100, 17, 12345});
  const auto dloss = float_tensor({}, DType::F32, {0.7});
  expect_matches_reference("cpu", {logits, labels}, cross_entropy_with(-100), 1e-5, 0);
  expect_matches_reference("cpu", {logits, labels, dloss}, cross_entropy_backward_with(-100), 1e-4,
                           1e-9);
  const auto small = random_tensor({13, 29}, DType::F64, 63, -30, 30);
  const auto small_labels = int_tensor({13}, DType::I32, {0, 1, 2, 28, 5, 3, 3, 7, -1, 9, 4, 0, 6});
  const auto dloss64 = float_tensor({}, DType::F64, {1.3});
  expect_matches_reference("cpu", {small, small_labels}, cross_entropy_with(-1), kRtol64, kAtol64);
  expect_matches_reference("cpu", {small, small_labels, dloss64}, cross_entropy_backward_with(-1),
                           kRtol64, kAtol64);
}

TEST(CrossEntropy, GradientsMatchFiniteDifferences) {
  const auto logits = random_tensor({4, 7}, DType::F64, 64, -3, 3);
  const auto labels = int_tensor({4}, DType::I64, {6, -100, 0, 3});
  expect_gradients_match_finite_differences({logits, labels}, cross_entropy_with(-100), {0},
                                            kFdRtol, kFdAtol);
}

TEST(CrossEntropy, CpuGradientsMatchReference) {
  const auto logits = random_tensor({6, 101}, DType::F32, 65, -5, 5);
  const auto labels = int_tensor({6}, DType::I32, {100, 0, -100, 50, 3, 99});
  expect_gradients_match_reference("cpu", {logits, labels}, cross_entropy_with(-100), {0}, 1e-4,
                                   1e-8);
}

TEST(CrossEntropy, LabelOutOfRangeThrows) {
  const auto logits = random_tensor({2, 5}, DType::F32, 66);
  const auto dloss = float_tensor({}, DType::F32, {1});
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    for (int64_t bad : {5, -1}) {
      const auto labels = int_tensor({2}, DType::I64, {1, bad});
      const std::string label = "label " + std::to_string(bad);
      expect_error(
          [&] {
            run_graph(backend, {logits, labels}, cross_entropy_with(-100));
          },
          {"CrossEntropy", label, "V = 5"});
      expect_error(
          [&] {
            run_graph(backend, {logits, labels, dloss}, cross_entropy_backward_with(-100));
          },
          {"CrossEntropyBackward", label, "V = 5"});
    }
  }
}

TEST(CrossEntropy, BuilderErrors) {
  Graph g;
  const ValueId logits = g.input({{4, 10}, DType::F32}, "logits");
  const ValueId labels3 = g.input({{3}, DType::I64}, "labels3");
  const ValueId flabels = g.input({{4}, DType::F32}, "flabels");
  const ValueId labels = g.input({{4}, DType::I64}, "labels");
  const ValueId dloss = g.input({{1}, DType::F32}, "dloss");
  expect_error([&] { ir::cross_entropy(g, logits, labels3); },
               {"CrossEntropy", "f32[4, 10]", "i64[3]"});
  expect_error([&] { ir::cross_entropy(g, logits, flabels); },
               {"CrossEntropy", "f32[4, 10]", "f32[4]"});
  expect_error([&] { ir::cross_entropy_backward(g, logits, labels, dloss, -100); },
               {"CrossEntropyBackward", "f32[4, 10]", "f32[1]"});
}

}  // namespace
}  // namespace solo::test
