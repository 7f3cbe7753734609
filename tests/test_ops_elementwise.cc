// Elementwise, broadcast and reduction ops: hand-computed values on the reference backend,
// cpu vs reference on odd shapes (including ones large enough to run threaded), gradients
// vs finite differences, cpu backward vs reference, and operand errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "op_check.h"
#include "solo/autograd/autograd.h"
#include "solo/core/error.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"

namespace solo::test {
namespace {

using ir::Graph;
using ir::ValueId;

// cpu vs reference tolerances: f32 kernels differ only in summation order and libm paths.
constexpr double kRtol = 1e-5, kAtol = 1e-6;

// Expects building to throw a solo::Error whose message contains every fragment.
template <class F>
void expect_build_error(F build, const std::vector<std::string>& fragments) {
  Graph g;
  try {
    build(g);
    ADD_FAILURE() << "expected a solo::Error";
  } catch (const Error& e) {
    for (const auto& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
          << "'" << f << "' not in: " << e.what();
  }
}

ValueId in_of(Graph& g, const Shape& s, DType dt = DType::F32) {
  return g.input({s, dt}, "x");
}

// ---- full --------------------------------------------------------------------------------

TEST(Full, HandValuesEveryDtype) {
  Builder build = [](Graph& g, const std::vector<ValueId>&) {
    return std::vector<ValueId>{
        ir::full(g, {2, 2}, DType::F32, 1.5), ir::full(g, {3}, DType::F64, -0.25),
        ir::full(g, {2}, DType::I32, 7),      ir::full(g, {2}, DType::I64, -3),
        ir::full(g, {2}, DType::Bool, 2.0),   ir::full(g, {1}, DType::BF16, 1.00390625),
        ir::full(g, {1}, DType::F16, 0.1),    ir::full(g, {}, DType::F32, 4),
        ir::full(g, {0, 3}, DType::F32, 1)};
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    // 1 + 2^-8 is a tie in bf16 and rounds to even (1); f16(0.1) = 0.0999755859375.
    expect_values(run_graph(backend, {}, build),
                  {{1.5, 1.5, 1.5, 1.5},
                   {-0.25, -0.25, -0.25},
                   {7, 7},
                   {-3, -3},
                   {1, 1},
                   {1.0},
                   {0.0999755859375},
                   {4},
                   {}},
                  0, 0);
  }
}

TEST(Full, LargeMatchesReference) {
  Builder build = [](Graph& g, const std::vector<ValueId>&) {
    return std::vector<ValueId>{ir::full(g, {301, 257}, DType::F32, -2.5),
                                ir::full(g, {70001}, DType::I64, 9)};
  };
  expect_matches_reference("cpu", {}, build, 0, 0);
}

TEST(Full, NegativeDimIsAnError) {
  expect_build_error([](Graph& g) { ir::full(g, {2, -1}, DType::F32, 0); }, {"full", "[2, -1]"});
}

// ---- binary ------------------------------------------------------------------------------

using BinaryFn = ValueId (*)(Graph&, ValueId, ValueId);

Builder binary_builder(BinaryFn f) {
  return [f](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{f(g, in[0], in[1])};
  };
}

// Shapes that exercise the flat path, every broadcast pattern and the threaded paths.
const std::vector<std::pair<Shape, Shape>>& binary_shapes() {
  static const std::vector<std::pair<Shape, Shape>> shapes = {{{37, 53}, {37, 53}},
                                                              {{5, 1, 7}, {3, 1}},
                                                              {{41}, {1}},
                                                              {{1}, {41}},
                                                              {{}, {7, 9}},
                                                              {{4, 3, 1, 6}, {3, 5, 1}},
                                                              {{129, 301}, {301}},
                                                              {{129, 301}, {129, 1}},
                                                              {{3, 70001}, {1, 70001}},
                                                              {{70001}, {}},
                                                              {{300, 1, 200}, {1, 7, 1}},
                                                              {{2, 1, 3}, {2, 3}},
                                                              {{1, 1}, {1, 1, 1}},
                                                              {{0, 3}, {3}}};
  return shapes;
}

void check_binary_matches_reference(BinaryFn f, double lo_b, double hi_b, bool ints) {
  uint64_t seed = 10;
  for (const auto& [sa, sb] : binary_shapes()) {
    SCOPED_TRACE(sa.str() + " op " + sb.str());
    for (DType dt : {DType::F32, DType::F64, DType::I32, DType::I64}) {
      if (is_integral(dt) && !ints) continue;
      const auto a = random_tensor(sa, dt, seed++, -50, 50);
      const auto b = random_tensor(sb, dt, seed++, lo_b, hi_b);
      expect_matches_reference("cpu", {a, b}, binary_builder(f), kRtol, kAtol);
    }
  }
}

void check_binary_gradients(BinaryFn f, double lo_b, double hi_b) {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{2, 3, 4}, {3, 1}}, {{3}, {2, 3}}, {{2, 1}, {1, 5}}, {{}, {4}}, {{3, 4}, {3, 4}}};
  uint64_t seed = 100;
  for (const auto& [sa, sb] : shapes) {
    SCOPED_TRACE(sa.str() + " op " + sb.str());
    const auto a = random_tensor(sa, DType::F64, seed++);
    const auto b = random_tensor(sb, DType::F64, seed++, lo_b, hi_b);
    expect_gradients_match_finite_differences({a, b}, binary_builder(f), {0, 1}, 1e-6, 1e-8);
    const auto a32 = random_tensor(sa, DType::F32, seed++);
    const auto b32 = random_tensor(sb, DType::F32, seed++, lo_b, hi_b);
    expect_gradients_match_reference("cpu", {a32, b32}, binary_builder(f), {0, 1}, kRtol, kAtol);
  }
}

TEST(Add, HandValues) {
  const auto a = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto b = float_tensor({3}, DType::F32, {10, 20, 30});
  expect_values(run_graph("reference", {a, b}, binary_builder(ir::add)), {{11, 22, 33, 14, 25, 36}},
                0, 0);
  const auto ia = int_tensor({2, 1}, DType::I64, {1, -2});
  const auto ib = int_tensor({2}, DType::I64, {100, 200});
  expect_values(run_graph("reference", {ia, ib}, binary_builder(ir::add)), {{101, 201, 98, 198}}, 0,
                0);
}
TEST(Add, MatchesReference) {
  check_binary_matches_reference(ir::add, -50, 50, true);
}
TEST(Add, Gradients) {
  check_binary_gradients(ir::add, -1, 1);
}

TEST(Sub, HandValues) {
  const auto a = float_tensor({2, 2}, DType::F32, {1, 2, 3, 4});
  const auto b = float_tensor({2, 1}, DType::F32, {10, 20});
  expect_values(run_graph("reference", {a, b}, binary_builder(ir::sub)), {{-9, -8, -17, -16}}, 0,
                0);
  const auto ia = int_tensor({3}, DType::I32, {5, 0, -5});
  const auto ib = int_tensor({}, DType::I32, {7});
  expect_values(run_graph("reference", {ia, ib}, binary_builder(ir::sub)), {{-2, -7, -12}}, 0, 0);
}
TEST(Sub, MatchesReference) {
  check_binary_matches_reference(ir::sub, -50, 50, true);
}
TEST(Sub, Gradients) {
  check_binary_gradients(ir::sub, -1, 1);
}

TEST(Mul, HandValues) {
  const auto a = float_tensor({3, 1}, DType::F64, {1, -2, 0.5});
  const auto b = float_tensor({2}, DType::F64, {3, 4});
  expect_values(run_graph("reference", {a, b}, binary_builder(ir::mul)), {{3, 4, -6, -8, 1.5, 2}},
                0, 0);
}
TEST(Mul, MatchesReference) {
  check_binary_matches_reference(ir::mul, -50, 50, true);
}
TEST(Mul, Gradients) {
  check_binary_gradients(ir::mul, -1, 1);
}

TEST(Div, HandValues) {
  const auto a = float_tensor({2, 2}, DType::F32, {1, 2, 3, 4});
  const auto b = float_tensor({2}, DType::F32, {2, -4});
  expect_values(run_graph("reference", {a, b}, binary_builder(ir::div)), {{0.5, -0.5, 1.5, -1}}, 0,
                0);
}
// Divisors kept in [0.5, 2] so the quotients and their gradients stay well conditioned.
TEST(Div, MatchesReference) {
  check_binary_matches_reference(ir::div, 0.5, 2, false);
}
TEST(Div, Gradients) {
  check_binary_gradients(ir::div, 0.5, 2);
}

TEST(Binary, ShapeAndDtypeErrors) {
  expect_build_error(
      [](Graph& g) {
        ir::add(g, in_of(g, {2, 3}), in_of(g, {4}));
      },
      {"Add", "do not broadcast", "f32[2, 3]", "f32[4]"});
  expect_build_error(
      [](Graph& g) {
        ir::sub(g, in_of(g, {2, 3}), in_of(g, {3, 2}));
      },
      {"Sub", "f32[2, 3]", "f32[3, 2]"});
  expect_build_error([](Graph& g) { ir::mul(g, in_of(g, {3}), in_of(g, {3}, DType::F64)); },
                     {"Mul", "dtypes differ", "f32[3]", "f64[3]"});
  expect_build_error(
      [](Graph& g) { ir::div(g, in_of(g, {3}, DType::I32), in_of(g, {3}, DType::I32)); },
      {"Div", "cast", "i32[3]"});
  expect_build_error(
      [](Graph& g) {
        ir::div(g, in_of(g, {5, 2}), in_of(g, {5}));
      },
      {"Div", "f32[5, 2]", "f32[5]"});
}

float round_bf16(double x) {
  return bf16_to_f32(f32_to_bf16(static_cast<float>(x)));
}

// Host kernels compute half operands in f32 and round the result to the output dtype: the
// arithmetic of the GPU kernels, so autocast programs run on every backend.
TEST(Binary, HalfOperandsComputeInF32AndRound) {
  const auto a = random_tensor({6}, DType::BF16, 1), b = random_tensor({6}, DType::BF16, 2, 0.5);
  std::vector<double> sums, quotients;
  for (size_t i = 0; i < 6; ++i) {
    const float x = round_bf16(a.values[i]), y = round_bf16(b.values[i]);
    sums.push_back(round_bf16(x + y));
    quotients.push_back(round_bf16(x / y));
  }
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    const auto sum = run_graph(backend, {a, b}, binary_builder(ir::add));
    EXPECT_EQ(sum[0].type.dtype, DType::BF16);
    expect_values(sum, {sums}, 0, 0);
    expect_values(run_graph(backend, {a, b}, binary_builder(ir::div)), {quotients}, 0, 0);
  }
}

// ---- where, masked_fill ------------------------------------------------------------------

TEST(MinMax, HandValues) {
  const auto a = float_tensor({2, 2}, DType::F32, {1, 5, -2, 3});
  const auto b = float_tensor({2}, DType::F32, {2, 4});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::minimum(g, in[0], in[1]), ir::maximum(g, in[0], in[1]),
                                ir::less(g, in[0], in[1])};
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {a, b}, build), {{1, 4, -2, 3}, {2, 5, 2, 4}, {1, 0, 1, 1}}, 0,
                  0);
  }
}

TEST(MinMax, MatchesReferenceAndGradients) {
  // Values apart by construction (a in [-1, 1), b in [2, 3) or shifted), so no ties.
  const auto a = random_tensor({3, 4}, DType::F32, 11);
  auto b = random_tensor({4}, DType::F32, 12);
  for (size_t i = 0; i < b.values.size(); ++i)
    b.values[i] = (i % 2 ? 2.0 : -2.0) + 0.5 * b.values[i];
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::minimum(g, in[0], in[1]), ir::maximum(g, in[0], in[1])};
  };
  expect_matches_reference("cpu", {a, b}, build, 0, 0);
  expect_gradients_match_finite_differences({a, b}, build, {0, 1});
  expect_gradients_match_reference("cpu", {a, b}, build, {0, 1}, 1e-6, 1e-7);
  Graph g;
  const ValueId x = g.input({{3, 4}, DType::F32}, "x"), y = g.input({{5}, DType::F32}, "y");
  EXPECT_THROW(ir::minimum(g, x, y), Error);
  EXPECT_THROW(ir::less(g, x, y), Error);
}

Builder where_builder() {
  return [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::where(g, in[0], in[1], in[2])};
  };
}

TEST(Where, HandValues) {
  const auto a = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto b = float_tensor({3}, DType::F32, {-1, -2, -3});
  const auto cond_bool = int_tensor({2, 1}, DType::Bool, {1, 0});
  const auto cond_f = float_tensor({3}, DType::F32, {0, 2.5, -1});
  const auto cond_i = int_tensor({2, 3}, DType::I64, {0, 1, 0, 5, 0, -1});
  expect_values(run_graph("reference", {cond_bool, a, b}, where_builder()), {{1, 2, 3, -1, -2, -3}},
                0, 0);
  expect_values(run_graph("reference", {cond_f, a, b}, where_builder()), {{-1, 2, 3, -1, 5, 6}}, 0,
                0);
  expect_values(run_graph("reference", {cond_i, a, b}, where_builder()), {{-1, 2, -3, 4, -2, 6}}, 0,
                0);
  const auto ia = int_tensor({2}, DType::I32, {7, 8});
  const auto ib = int_tensor({2}, DType::I32, {-7, -8});
  expect_values(run_graph("reference", {cond_bool, ia, ib}, where_builder()), {{7, 8, -7, -8}}, 0,
                0);
}

TEST(Where, MatchesReference) {
  const std::vector<std::array<Shape, 3>> shapes = {{Shape{37, 53}, Shape{37, 53}, Shape{37, 53}},
                                                    {Shape{5, 1}, Shape{7}, Shape{1, 7}},
                                                    {Shape{1}, Shape{3, 4}, Shape{}},
                                                    {Shape{129, 301}, Shape{301}, Shape{129, 1}},
                                                    {Shape{70001}, Shape{70001}, Shape{}},
                                                    {Shape{2, 1, 9}, Shape{3, 1}, Shape{2, 3, 9}}};
  uint64_t seed = 300;
  for (const auto& s : shapes) {
    SCOPED_TRACE(s[0].str() + " " + s[1].str() + " " + s[2].str());
    for (DType cd :
         {DType::Bool, DType::I32, DType::I64, DType::F32, DType::F64, DType::BF16, DType::F16})
      for (DType dt : {DType::F32, DType::F64, DType::I64, DType::BF16, DType::Bool}) {
        // Float conditions hold zeros about a third of the time.
        auto cond = random_tensor(s[0], cd, seed++, -1, 2);
        if (is_floating(cd))
          for (double& v : cond.values) v = std::floor(v);
        const auto a = random_tensor(s[1], dt, seed++, -5, 5);
        const auto b = random_tensor(s[2], dt, seed++, -5, 5);
        expect_matches_reference("cpu", {cond, a, b}, where_builder(), 0, 0);
      }
  }
}

TEST(Where, Gradients) {
  const auto cond = random_tensor({2, 3, 4}, DType::Bool, 7, 0, 2);
  const auto a = random_tensor({3, 1}, DType::F64, 8);
  const auto b = random_tensor({2, 1, 4}, DType::F64, 9);
  expect_gradients_match_finite_differences({cond, a, b}, where_builder(), {1, 2});
  const auto cond2 = random_tensor({3, 1}, DType::I32, 10, 0, 2);
  const auto a2 = random_tensor({3, 5}, DType::F32, 11);
  const auto b2 = random_tensor({5}, DType::F32, 12);
  expect_gradients_match_finite_differences({cond2, a2, b2}, where_builder(), {1, 2});
  expect_gradients_match_reference("cpu",
                                   {cond, with_dtype(a, DType::F32), with_dtype(b, DType::F32)},
                                   where_builder(), {1, 2}, kRtol, kAtol);
  expect_gradients_match_reference("cpu", {cond2, a2, b2}, where_builder(), {1, 2}, kRtol, kAtol);
}

TEST(Where, Errors) {
  expect_build_error(
      [](Graph& g) {
        ir::where(g, in_of(g, {2}, DType::Bool), in_of(g, {2}), in_of(g, {2}, DType::F64));
      },
      {"Where", "dtypes", "bool[2]", "f32[2]", "f64[2]"});
  expect_build_error(
      [](Graph& g) { ir::where(g, in_of(g, {4}, DType::Bool), in_of(g, {3}), in_of(g, {3})); },
      {"Where", "do not broadcast", "bool[4]", "f32[3]"});
}

Builder masked_fill_builder(double v) {
  return [v](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::masked_fill(g, in[0], in[1], v)};
  };
}

TEST(MaskedFill, HandValues) {
  const auto x = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto mask = int_tensor({3}, DType::Bool, {0, 1, 0});
  expect_values(run_graph("reference", {x, mask}, masked_fill_builder(-1e9)),
                {{1, -1e9, 3, 4, -1e9, 6}}, 0, 0);
  const auto inf = -std::numeric_limits<double>::infinity();
  const auto mask2 = int_tensor({2, 1}, DType::I32, {1, 0});
  expect_values(run_graph("reference", {x, mask2}, masked_fill_builder(inf)),
                {{inf, inf, inf, 4, 5, 6}}, 0, 0);
}

TEST(MaskedFill, MatchesReferenceAndGradients) {
  const auto x = random_tensor({67, 129}, DType::F32, 1);
  const auto mask = random_tensor({67, 1}, DType::Bool, 2, 0, 2);
  expect_matches_reference("cpu", {x, mask}, masked_fill_builder(-3), 0, 0);
  const auto xs = random_tensor({3, 5}, DType::F64, 3);
  const auto ms = random_tensor({5}, DType::Bool, 4, 0, 2);
  expect_gradients_match_finite_differences({xs, ms}, masked_fill_builder(2), {0});
  expect_gradients_match_reference("cpu", {x, mask}, masked_fill_builder(-3), {0}, 0, 0);
}

TEST(MaskedFill, ShapeError) {
  expect_build_error(
      [](Graph& g) {
        ir::masked_fill(g, in_of(g, {2, 3}), in_of(g, {2}, DType::Bool), 0);
      },
      {"Where", "f32[2, 3]", "bool[2]"});
}

// ---- scalar and unary ops ----------------------------------------------------------------

using UnaryFn = std::function<ValueId(Graph&, ValueId)>;

Builder unary_builder(UnaryFn f) {
  return
      [f](Graph& g, const std::vector<ValueId>& in) { return std::vector<ValueId>{f(g, in[0])}; };
}

// Hand values, cpu vs reference (odd and threaded sizes), gradients and an operand error
// for a unary op defined on [lo, hi).
void check_unary(const UnaryFn& f, const std::vector<double>& x,
                 const std::vector<double>& expected, double lo, double hi, double hand_rtol,
                 bool ints_ok) {
  const Shape hand_shape{static_cast<int64_t>(x.size())};
  for (DType dt : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtype_name(dt));
    expect_values(run_graph("reference", {float_tensor(hand_shape, dt, x)}, unary_builder(f)),
                  {expected}, dt == DType::F32 ? std::max(hand_rtol, 1e-6) : hand_rtol, 1e-12);
  }
  uint64_t seed = 500;
  for (const Shape& s : {Shape{37, 53}, Shape{}, Shape{70001}, Shape{0}})
    for (DType dt : {DType::F32, DType::F64}) {
      SCOPED_TRACE(s.str());
      expect_matches_reference("cpu", {random_tensor(s, dt, seed++, lo, hi)}, unary_builder(f),
                               kRtol, kAtol);
    }
  if (ints_ok)
    for (DType dt : {DType::I32, DType::I64})
      expect_matches_reference("cpu", {random_tensor({45}, dt, seed++, -100, 100)},
                               unary_builder(f), 0, 0);
  expect_gradients_match_finite_differences({random_tensor({3, 7}, DType::F64, seed++, lo, hi)},
                                            unary_builder(f), {0}, 1e-6, 1e-8);
  expect_gradients_match_reference("cpu", {random_tensor({31, 17}, DType::F32, seed++, lo, hi)},
                                   unary_builder(f), {0}, kRtol, kAtol);
  if (!ints_ok)
    expect_build_error(
        [&](Graph& g) {
          f(g, in_of(g, {2, 5}, DType::I32));
        },
        {"needs a float tensor", "i32[2, 5]"});
}

const double kE = std::exp(1.0);

TEST(AddScalar, All) {
  check_unary([](Graph& g, ValueId x) { return ir::add_scalar(g, x, 2.5); }, {1, -3, 0},
              {3.5, -0.5, 2.5}, -2, 2, 0, true);
}
TEST(MulScalar, All) {
  check_unary([](Graph& g, ValueId x) { return ir::mul_scalar(g, x, -3); }, {1, -0.5, 0},
              {-3, 1.5, 0}, -2, 2, 0, true);
}
TEST(PowScalar, All) {
  for (double p : {2.0, 3.0, 0.5, -1.0, 1.0, 1.7, -2.5}) {
    SCOPED_TRACE(p);
    const std::vector<double> x = {4, 0.25, 1};
    std::vector<double> y;
    for (double v : x) y.push_back(std::pow(v, p));
    check_unary([p](Graph& g, ValueId v) { return ir::pow_scalar(g, v, p); }, x, y, 0.5, 2, 1e-15,
                false);
  }
  // p = 0: the gradient is exactly zero.
  check_unary([](Graph& g, ValueId v) { return ir::pow_scalar(g, v, 0); }, {4, 0.5}, {1, 1}, 0.5, 2,
              0, false);
}
TEST(Neg, All) {
  check_unary([](Graph& g, ValueId x) { return ir::neg(g, x); }, {1, -2, 0}, {-1, 2, 0}, -2, 2, 0,
              true);
}
TEST(Exp, All) {
  check_unary([](Graph& g, ValueId x) { return ir::exp(g, x); }, {0, 1, -1}, {1, kE, 1 / kE}, -3, 3,
              1e-15, false);
}
TEST(Log, All) {
  check_unary([](Graph& g, ValueId x) { return ir::log(g, x); }, {1, kE, 0.5},
              {0, 1, -0.6931471805599453}, 0.2, 3, 1e-15, false);
}
TEST(Sqrt, All) {
  check_unary([](Graph& g, ValueId x) { return ir::sqrt(g, x); }, {4, 0.25, 2},
              {2, 0.5, 1.4142135623730951}, 0.2, 3, 1e-15, false);
}
TEST(Rsqrt, All) {
  check_unary([](Graph& g, ValueId x) { return ir::rsqrt(g, x); }, {4, 0.25, 2},
              {0.5, 2, 0.7071067811865476}, 0.2, 3, 1e-15, false);
}
TEST(Silu, All) {
  check_unary([](Graph& g, ValueId x) { return ir::silu(g, x); }, {0, 1, -2},
              {0, 0.7310585786300049, -0.2384058440442351}, -4, 4, 1e-14, false);
}
TEST(Gelu, Exact) {
  check_unary([](Graph& g, ValueId x) { return ir::gelu(g, x); }, {0, 1, -1, 2},
              {0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416}, -4, 4, 1e-14,
              false);
}
TEST(Gelu, Tanh) {
  check_unary([](Graph& g, ValueId x) { return ir::gelu(g, x, true); }, {0, 1, -1, 2},
              {0, 0.8411919906082768, -0.15880800939172324, 1.954597694087775}, -4, 4, 1e-14,
              false);
}

TEST(Unary, BoolIsAnError) {
  expect_build_error([](Graph& g) { ir::neg(g, in_of(g, {3}, DType::Bool)); },
                     {"Neg", "bool", "bool[3]"});
}

TEST(Unary, HalfInputComputesInF32AndRounds) {
  const auto x = random_tensor({8}, DType::BF16, 1);
  std::vector<double> want;
  for (double v : x.values) want.push_back(round_bf16(std::exp(round_bf16(v))));
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    // Vectorised exp may land on the neighbouring bf16 value: one ulp (2^-8 relative).
    expect_values(
        run_graph(backend, {x}, unary_builder([](Graph& g, ValueId v) { return ir::exp(g, v); })),
        {want}, 0x1p-7, 0);
  }
}

// ---- fused activation backward -----------------------------------------------------------

using BackwardFn = std::function<ValueId(Graph&, ValueId, ValueId)>;

Builder backward_builder(BackwardFn f) {
  return [f](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{f(g, in[0], in[1])};
  };
}

void check_activation_backward(const BackwardFn& f, const std::vector<double>& slopes) {
  // x = {0, 1, -1}, dy = {1, 2, -3}: dx = dy * f'(x)
  const std::vector<double> xs = {0, 1, -1}, dys = {1, 2, -3};
  std::vector<double> expected;
  for (size_t i = 0; i < xs.size(); ++i) expected.push_back(dys[i] * slopes[i]);
  for (DType dt : {DType::F32, DType::F64})
    expect_values(run_graph("reference", {float_tensor({3}, dt, xs), float_tensor({3}, dt, dys)},
                            backward_builder(f)),
                  {expected}, dt == DType::F32 ? 1e-6 : 1e-14, 1e-12);
  uint64_t seed = 900;
  for (const Shape& s : {Shape{37, 53}, Shape{70001}})
    for (DType dt : {DType::F32, DType::F64})
      expect_matches_reference("cpu",
                               {random_tensor(s, dt, seed++, -5, 5), random_tensor(s, dt, seed++)},
                               backward_builder(f), kRtol, kAtol);
  // Double backward (through both inputs).
  const std::vector<HostTensor> small = {random_tensor({4, 5}, DType::F64, seed++, -3, 3),
                                         random_tensor({4, 5}, DType::F64, seed++)};
  expect_gradients_match_finite_differences(small, backward_builder(f), {0, 1}, 1e-6, 1e-8);
  expect_gradients_match_reference("cpu",
                                   {random_tensor({9, 13}, DType::F32, seed++, -3, 3),
                                    random_tensor({9, 13}, DType::F32, seed++)},
                                   backward_builder(f), {0, 1}, kRtol, kAtol);
  expect_build_error(
      [&](Graph& g) {
        f(g, in_of(g, {2, 3}), in_of(g, {3, 2}));
      },
      {"Backward", "f32[2, 3]", "f32[3, 2]"});
}

TEST(SiluBackward, All) {
  // silu'(0) = 1/2, silu'(1) = s(1)(1 + (1 - s(1))), silu'(-1) = s(-1)(1 - (1 - s(-1)))
  const double s1 = 1 / (1 + std::exp(-1.0)), sm1 = 1 - s1;
  check_activation_backward(ir::silu_backward, {0.5, s1 * (2 - s1), sm1 * sm1});
}
TEST(GeluBackward, Exact) {
  // gelu'(x) = Phi(x) + x phi(x): Phi(1) = 0.8413447460685429, phi(1) = 0.24197072451914337
  check_activation_backward(
      [](Graph& g, ValueId x, ValueId dy) { return ir::gelu_backward(g, x, dy, false); },
      {0.5, 1.0833154705876864, -0.08331547058768629});
}
TEST(GeluBackward, Tanh) {
  check_activation_backward(
      [](Graph& g, ValueId x, ValueId dy) { return ir::gelu_backward(g, x, dy, true); },
      {0.5, 1.0829640838457826, -0.08296408384578255});
}

// ---- swiglu ------------------------------------------------------------------------------

Builder swiglu_builder() {
  return [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::swiglu(g, in[0], in[1])};
  };
}
Builder swiglu_backward_builder() {
  return [](Graph& g, const std::vector<ValueId>& in) {
    return ir::swiglu_backward(g, in[0], in[1], in[2]);
  };
}

TEST(Swiglu, HandValues) {
  // silu(0) = 0, silu(1) = s(1), silu(-2) = -2 s(-2), times up = 5, 2, 3
  const double s1 = 1 / (1 + std::exp(-1.0)), sm2 = 1 / (1 + std::exp(2.0));
  for (DType dt : {DType::F32, DType::F64})
    expect_values(run_graph("reference",
                            {float_tensor({3}, dt, {0, 1, -2}), float_tensor({3}, dt, {5, 2, 3})},
                            swiglu_builder()),
                  {{0, 2 * s1, -6 * sm2}}, dt == DType::F32 ? 1e-6 : 1e-14, 1e-12);
}

TEST(Swiglu, MatchesTheUnfusedOpsAndCpuMatchesReference) {
  const Builder unfused = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::mul(g, ir::silu(g, in[0]), in[1])};
  };
  const std::vector<HostTensor> small = {random_tensor({5, 7}, DType::F64, 1, -6, 6),
                                         random_tensor({5, 7}, DType::F64, 2)};
  expect_values(run_graph("reference", small, swiglu_builder()),
                {run_graph("reference", small, unfused)[0].values}, 1e-15, 1e-15);
  uint64_t seed = 10;
  for (const Shape& s : {Shape{37, 53}, Shape{70001}})
    for (DType dt : {DType::F32, DType::F64})
      expect_matches_reference("cpu",
                               {random_tensor(s, dt, seed++, -6, 6), random_tensor(s, dt, seed++)},
                               swiglu_builder(), kRtol, kAtol);
}

TEST(Swiglu, GradientsMatchFiniteDifferencesAndReference) {
  expect_gradients_match_finite_differences(
      {random_tensor({4, 5}, DType::F64, 3, -3, 3), random_tensor({4, 5}, DType::F64, 4)},
      swiglu_builder(), {0, 1}, 1e-6, 1e-8);
  expect_gradients_match_reference(
      "cpu", {random_tensor({9, 13}, DType::F32, 5, -3, 3), random_tensor({9, 13}, DType::F32, 6)},
      swiglu_builder(), {0, 1}, kRtol, kAtol);
}

TEST(SwigluBackward, HandValuesAndCpuMatchesReference) {
  // gate 1, up 2, dy 3: dup = 3 silu(1) = 3 s1, dgate = 3 * 2 * silu'(1) = 6 s1 (2 - s1)
  const double s1 = 1 / (1 + std::exp(-1.0));
  expect_values(run_graph("reference",
                          {float_tensor({1}, DType::F64, {1}), float_tensor({1}, DType::F64, {2}),
                           float_tensor({1}, DType::F64, {3})},
                          swiglu_backward_builder()),
                {{6 * s1 * (2 - s1)}, {3 * s1}}, 1e-14, 1e-14);
  uint64_t seed = 20;
  for (DType dt : {DType::F32, DType::F64})
    expect_matches_reference(
        "cpu",
        {random_tensor({37, 53}, dt, seed++, -6, 6), random_tensor({37, 53}, dt, seed++),
         random_tensor({37, 53}, dt, seed++)},
        swiglu_backward_builder(), kRtol, kAtol);
}

TEST(Swiglu, OperandErrors) {
  expect_build_error(
      [](Graph& g) {
        ir::swiglu(g, in_of(g, {2, 3}), in_of(g, {3, 2}));
      },
      {"Swiglu", "f32[2, 3]", "f32[3, 2]"});
  expect_build_error(
      [](Graph& g) { ir::swiglu(g, in_of(g, {2}, DType::I32), in_of(g, {2}, DType::I32)); },
      {"Swiglu", "float", "i32[2]"});
  expect_build_error(
      [](Graph& g) {
        ir::swiglu_backward(g, in_of(g, {2}), in_of(g, {2}), in_of(g, {2}, DType::F64));
      },
      {"SwigluBackward", "f64[2]"});
}

// ---- cast --------------------------------------------------------------------------------

Builder cast_builder(DType to) {
  return [to](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::cast(g, in[0], to)};
  };
}

TEST(Cast, HandValues) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const auto x = float_tensor({8}, DType::F32, {2.7, -2.7, 0.0, -0.5, 1e10, -1e10, nan, 3.0});
  const auto y =
      float_tensor({7}, DType::F32, {1.00390625, 1.01171875, 65520.0, 65519.0, 0.1, 1e-8, -0.0});
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    // Float to int truncates toward zero; NaN gives 0; out-of-range saturates.
    expect_values(run_graph(backend, {x}, cast_builder(DType::I32)),
                  {{2, -2, 0, 0, 2147483647, -2147483648.0, 0, 3}}, 0, 0);
    expect_values(run_graph(backend, {x}, cast_builder(DType::I64)),
                  {{2, -2, 0, 0, 1e10, -1e10, 0, 3}}, 0, 0);
    expect_values(run_graph(backend, {x}, cast_builder(DType::Bool)), {{1, 1, 0, 1, 1, 1, 1, 1}}, 0,
                  0);
    // bf16: 1 + 2^-8 ties to even (1); 1 + 3 * 2^-8 ties to even (1 + 2^-6).
    // f16: 65520 ties up to inf, 65519 rounds to the max 65504, 1e-8 underflows to 0.
    expect_values(run_graph(backend, {y}, cast_builder(DType::BF16)),
                  {{1.0, 1.015625, 65536.0, 65536.0, 0.10009765625, 1.0011717677116394e-08, 0}}, 0,
                  0);
    expect_values(run_graph(backend, {y}, cast_builder(DType::F16)),
                  {{1.00390625, 1.01171875, inf, 65504.0, 0.0999755859375, 0, 0}}, 0, 0);
    const auto i = int_tensor({4}, DType::I64, {-3, 0, 16777217, 1});
    expect_values(run_graph(backend, {i}, cast_builder(DType::F32)), {{-3, 0, 16777216, 1}}, 0, 0);
    expect_values(run_graph(backend, {i}, cast_builder(DType::Bool)), {{1, 0, 1, 1}}, 0, 0);
    expect_values(
        run_graph(backend, {int_tensor({2}, DType::Bool, {1, 0})}, cast_builder(DType::F64)),
        {{1, 0}}, 0, 0);
  }
}

TEST(Cast, EveryPairMatchesReference) {
  const DType all[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                       DType::I32, DType::I64, DType::Bool};
  uint64_t seed = 1000;
  for (DType from : all)
    for (DType to : all) {
      if (from == to) continue;
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to));
      for (const Shape& s : {Shape{3, 41}, Shape{70001}}) {
        auto x = random_tensor(s, from, seed++, -300, 300);
        if (from == DType::Bool)
          for (double& v : x.values) v = v > 0;
        expect_matches_reference("cpu", {x}, cast_builder(to), 0, 0);
      }
    }
}

TEST(Cast, SameDtypeIsTheInput) {
  Graph g;
  const ValueId x = in_of(g, {3});
  EXPECT_EQ(ir::cast(g, x, DType::F32), x);
}

TEST(Cast, Gradients) {
  // f64 -> f32 -> f64 is the identity up to f32 rounding, so a coarse step is used.
  Builder round_trip = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::cast(g, ir::cast(g, in[0], DType::F32), DType::F64)};
  };
  expect_gradients_match_finite_differences({random_tensor({3, 5}, DType::F64, 1)}, round_trip, {0},
                                            1e-4, 1e-6, 1e-2);
  Builder widen = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{
        ir::mul(g, ir::cast(g, in[0], DType::F64), ir::cast(g, in[0], DType::F64))};
  };
  expect_gradients_match_reference("cpu", {random_tensor({33, 7}, DType::F32, 2)}, widen, {0},
                                   kRtol, kAtol);
}

TEST(Cast, IntegerInputGetsNoGradient) {
  Graph g;
  const ValueId i = in_of(g, {3}, DType::I32);
  const ValueId y = ir::cast(g, i, DType::F32);
  const ValueId dy = ir::full(g, {3}, DType::F32, 1);
  const ir::Node node = g.producer(y);
  const auto din = autograd::vjp_table().get(OpKind::Cast)(g, node, {dy});
  ASSERT_EQ(din.size(), 1u);
  EXPECT_EQ(din[0], ir::kNoValue);
}

// ---- sum, mean ---------------------------------------------------------------------------

struct Reduction {
  Shape shape;
  std::vector<int64_t> axes;
  bool keepdim;
};

// Every reduction pattern the cpu kernel distinguishes: trailing ([M, R]), leading ([R, N]),
// middle ([A, R, N]), all, none, size-1 axes and the gather fallback; threaded sizes too.
const std::vector<Reduction>& reductions() {
  static const std::vector<Reduction> r = {{{37, 53}, {1}, false},
                                           {{37, 53}, {0}, false},
                                           {{37, 53}, {}, false},
                                           {{5, 7, 9}, {1}, true},
                                           {{5, 7, 9}, {0, 2}, false},
                                           {{5, 7, 9}, {0, 1}, false},
                                           {{5, 7, 9}, {1, 2}, true},
                                           {{5, 7, 9}, {-1}, false},
                                           {{3, 1, 5}, {1}, false},
                                           {{1, 1}, {0}, true},
                                           {{}, {}, false},
                                           {{4, 0, 3}, {1}, false},
                                           {{300, 700}, {0}, false},
                                           {{700, 300}, {1}, false},
                                           {{4, 20001}, {1}, true},
                                           {{3, 200, 129}, {1}, false},
                                           {{70001}, {}, false},
                                           {{2, 3, 4, 5}, {0, 2}, false},
                                           {{3, 4, 5, 6}, {1, 3}, true},
                                           {{9000, 7}, {0}, false},
                                           {{8, 5000, 3}, {1}, false},
                                           {{6, 1, 7}, {0, 1}, false},
                                           {{6, 8, 7}, {2, 0}, false}};
  return r;
}

Builder sum_builder(const Reduction& r) {
  return [r](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::sum(g, in[0], r.axes, r.keepdim)};
  };
}
Builder mean_builder(const Reduction& r) {
  return [r](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::mean(g, in[0], r.axes, r.keepdim)};
  };
}

TEST(Sum, HandValues) {
  const auto x = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::sum(g, in[0], {0}), ir::sum(g, in[0], {1}, true),
                                ir::sum(g, in[0]), ir::sum(g, in[0], {-1, 0}, true)};
  };
  const auto out = run_graph("reference", {x}, build);
  expect_values(out, {{5, 7, 9}, {6, 15}, {21}, {21}}, 0, 0);
  EXPECT_EQ(out[1].type.shape, (Shape{2, 1}));
  EXPECT_EQ(out[2].type.shape, Shape{});
  EXPECT_EQ(out[3].type.shape, (Shape{1, 1}));
  const auto i = int_tensor({2, 2}, DType::I32, {1, -2, 3, 4});
  expect_values(run_graph("reference", {i}, sum_builder({{2, 2}, {0}, false})), {{4, 2}}, 0, 0);
}

TEST(Sum, MatchesReference) {
  uint64_t seed = 2000;
  for (const Reduction& r : reductions()) {
    SCOPED_TRACE(r.shape.str());
    // f32 sums of up to ~70k values in [-1, 1]: the absolute error grows with the count.
    expect_matches_reference("cpu", {random_tensor(r.shape, DType::F32, seed++)}, sum_builder(r),
                             1e-5, 2e-4);
    expect_matches_reference("cpu", {random_tensor(r.shape, DType::F64, seed++)}, sum_builder(r),
                             1e-12, 1e-12);
    expect_matches_reference("cpu", {random_tensor(r.shape, DType::I64, seed++, -9, 9)},
                             sum_builder(r), 0, 0);
    expect_matches_reference("cpu", {random_tensor(r.shape, DType::I32, seed++, -9, 9)},
                             sum_builder(r), 0, 0);
  }
}

TEST(Sum, Gradients) {
  const std::vector<Reduction> r = {{{3, 4}, {1}, false},
                                    {{2, 3, 4}, {0, 2}, true},
                                    {{2, 3, 4}, {}, false},
                                    {{3, 1, 2}, {1}, false}};
  uint64_t seed = 2100;
  for (const Reduction& q : r) {
    expect_gradients_match_finite_differences({random_tensor(q.shape, DType::F64, seed++)},
                                              sum_builder(q), {0});
  }
  for (const Reduction& q : reductions()) {
    if (q.shape.numel() > 10000 || q.shape.numel() == 0) continue;
    expect_gradients_match_reference("cpu", {random_tensor(q.shape, DType::F32, seed++)},
                                     sum_builder(q), {0}, kRtol, kAtol);
  }
}

TEST(Mean, HandValues) {
  const auto x = float_tensor({2, 3}, DType::F64, {1, 2, 3, 4, 5, 6});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::mean(g, in[0], {0}), ir::mean(g, in[0], {1}, true),
                                ir::mean(g, in[0])};
  };
  expect_values(run_graph("reference", {x}, build), {{2.5, 3.5, 4.5}, {2, 5}, {3.5}}, 0, 0);
}

TEST(Mean, MatchesReference) {
  uint64_t seed = 2200;
  for (const Reduction& r : reductions()) {
    SCOPED_TRACE(r.shape.str());
    expect_matches_reference("cpu", {random_tensor(r.shape, DType::F32, seed++)}, mean_builder(r),
                             1e-5, 1e-5);
    expect_matches_reference("cpu", {random_tensor(r.shape, DType::F64, seed++)}, mean_builder(r),
                             1e-12, 1e-12);
  }
}

TEST(Mean, Gradients) {
  const std::vector<Reduction> r = {
      {{3, 4}, {1}, false}, {{2, 3, 4}, {0, 2}, true}, {{2, 3, 4}, {}, false}, {{4, 5}, {0}, true}};
  uint64_t seed = 2300;
  for (const Reduction& q : r) {
    expect_gradients_match_finite_differences({random_tensor(q.shape, DType::F64, seed++)},
                                              mean_builder(q), {0});
    expect_gradients_match_reference("cpu", {random_tensor(q.shape, DType::F32, seed++)},
                                     mean_builder(q), {0}, kRtol, kAtol);
  }
}

TEST(Reduction, Errors) {
  expect_build_error(
      [](Graph& g) {
        ir::sum(g, in_of(g, {2, 3}), {0, -2});
      },
      {"Sum", "repeated", "[2, 3]"});
  expect_build_error([](Graph& g) { ir::sum(g, in_of(g, {2, 3}), {2}); }, {"Sum", "axis 2"});
  expect_build_error(
      [](Graph& g) {
        ir::mean(g, in_of(g, {2, 3}, DType::I64));
      },
      {"Mean", "float", "i64[2, 3]"});
}

// ---- broadcast_to, sum_to ----------------------------------------------------------------

TEST(BroadcastTo, HandValues) {
  const auto x = float_tensor({2, 1}, DType::F32, {1, 2});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::broadcast_to(g, in[0], {2, 2, 3})};
  };
  expect_values(run_graph("reference", {x}, build), {{1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2}}, 0, 0);
}

TEST(BroadcastTo, MatchesReference) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{53}, {37, 53}},          {{37, 1}, {37, 53}}, {{}, {5, 7}},
      {{3, 1, 5}, {2, 3, 4, 5}}, {{1}, {70001}},      {{129, 1, 3}, {129, 301, 3}},
      {{1, 301}, {200, 301}}};
  uint64_t seed = 3000;
  for (const auto& [from, to] : cases) {
    SCOPED_TRACE(from.str() + " -> " + to.str());
    for (DType dt : {DType::F32, DType::F64, DType::I64, DType::BF16, DType::Bool}) {
      // An init-capture: clang 14 cannot capture a structured binding.
      Builder build = [to = to](Graph& g, const std::vector<ValueId>& in) {
        return std::vector<ValueId>{ir::broadcast_to(g, in[0], to)};
      };
      expect_matches_reference("cpu", {random_tensor(from, dt, seed++, -3, 3)}, build, 0, 0);
    }
  }
}

TEST(BroadcastTo, Gradients) {
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::broadcast_to(g, in[0], {2, 3, 4})};
  };
  expect_gradients_match_finite_differences({random_tensor({3, 1}, DType::F64, 1)}, build, {0});
  expect_gradients_match_reference("cpu", {random_tensor({3, 1}, DType::F32, 2)}, build, {0}, kRtol,
                                   kAtol);
}

TEST(BroadcastTo, ShapeError) {
  expect_build_error(
      [](Graph& g) {
        ir::broadcast_to(g, in_of(g, {2, 3}), {3, 3});
      },
      {"BroadcastTo", "f32[2, 3]", "f32[3, 3]"});
}

TEST(SumTo, HandValuesGradientsAndError) {
  const auto x = float_tensor({2, 2, 3}, DType::F32, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::sum_to(g, in[0], {2, 1}), ir::sum_to(g, in[0], {3}),
                                ir::sum_to(g, in[0], {2, 2, 3})};
  };
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    expect_values(run_graph(backend, {x}, build),
                  {{30, 48},
                   {1 + 4 + 7 + 10, 2 + 5 + 8 + 11, 3 + 6 + 9 + 12},
                   {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
                  0, 0);
  }
  expect_gradients_match_finite_differences({random_tensor({2, 2, 3}, DType::F64, 1)}, build, {0});
  expect_gradients_match_reference("cpu", {random_tensor({2, 2, 3}, DType::F32, 2)}, build, {0},
                                   kRtol, kAtol);
  expect_build_error(
      [](Graph& g) {
        ir::sum_to(g, in_of(g, {2, 3}), {4});
      },
      {"sum_to", "[2, 3]", "[4]"});
}

}  // namespace
}  // namespace solo::test
