// Layout, matmul and lookup ops: Permute (transpose), Slice, SliceBackward, Concat, MatMul
// (linear), Embedding, EmbeddingBackward. Hand-computed values on the reference backend,
// cpu vs reference, finite-difference gradients, cpu backward vs reference, operand errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>
#include <numeric>

#include "op_check.h"
#include "solo/backend/backend.h"
#include "solo/ir/ops.h"

namespace solo::test {
namespace {

using ir::Graph;
using ir::ValueId;

// Data-movement ops copy bits: cpu must equal reference exactly.
constexpr double kExact = 0.0;
// f32 GEMM (OpenBLAS, blocked f32 sums) vs the reference's double-accumulated triple loop,
// for K up to ~40 and values in [-1, 1).
constexpr double kGemmRtol = 1e-5, kGemmAtol = 1e-5;
// f64 GEMM vs double accumulation: only summation order differs.
constexpr double kGemm64Rtol = 1e-12, kGemm64Atol = 1e-12;

// The loss and gradient graphs also run Full, Add, Mul, Sum and BroadcastTo, whose cpu
// kernels belong to the elementwise group: cpu gradient checks need them present.
#define REQUIRE_CPU_KERNELS(...)                                               \
  do {                                                                         \
    const auto cpu = make_backend("cpu");                                      \
    for (OpKind op : {__VA_ARGS__})                                            \
      if (!cpu->has_kernel(op))                                                \
        GTEST_SKIP() << "cpu backend has no " << op_name(op) << " kernel yet"; \
  } while (0)
#define REQUIRE_CPU_GRADIENT_KERNELS() \
  REQUIRE_CPU_KERNELS(OpKind::Full, OpKind::Add, OpKind::Mul, OpKind::Sum, OpKind::BroadcastTo)

// Runs `f`, which must throw solo::Error whose message contains every string in `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "expected solo::Error";
  } catch (const Error& e) {
    for (const char* p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

Builder one(std::function<ValueId(Graph&, const std::vector<ValueId>&)> f) {
  return [f](Graph& g, const std::vector<ValueId>& in) { return std::vector<ValueId>{f(g, in)}; };
}

// ---- Permute / transpose -----------------------------------------------------------------------

TEST(Permute, HandValues) {
  const auto x = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  expect_values(run_graph("reference", {x}, one([](Graph& g, const auto& in) {
                            return ir::transpose(g, in[0], 0, -1);
                          })),
                {{1, 4, 2, 5, 3, 6}}, 0, 0);
  // x [2, 3, 2] = 0..11, perm (2, 0, 1): y[k, i, j] = x[i, j, k] = 6i + 2j + k.
  std::vector<double> v(12);
  std::iota(v.begin(), v.end(), 0.0);
  const auto x3 = float_tensor({2, 3, 2}, DType::F64, v);
  const auto y = run_graph("reference", {x3}, one([](Graph& g, const auto& in) {
                             return ir::permute(g, in[0], {2, 0, 1});
                           }));
  EXPECT_EQ(y[0].type.shape, (Shape{2, 2, 3}));
  expect_values(y, {{0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11}}, 0, 0);
}

TEST(Permute, TransposeIsAPermuteAndIdentityIsFree) {
  Graph g;
  const ValueId x = g.input({{2, 3, 4}, DType::F32}, "x");
  const ValueId t = ir::transpose(g, x, -1, 0);
  EXPECT_EQ(g.producer(t).op, OpKind::Permute);
  EXPECT_EQ(g.shape(t), (Shape{4, 3, 2}));
  EXPECT_EQ(g.producer(t).attrs.ints("perm"), (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(ir::permute(g, x, {0, 1, 2}), x);
  EXPECT_EQ(g.shape(ir::permute(g, x, {-1, 0, 1})), (Shape{4, 2, 3}));
}

TEST(Permute, CpuMatchesReferenceForEveryPermOfRank4) {
  // Includes a size-1 dim, so the cpu kernel's dim merging and all three paths (rows kept,
  // last two swapped, general gather) are exercised.
  for (const Shape& s : {Shape{3, 5, 2, 7}, Shape{2, 1, 6, 5}}) {
    std::vector<int64_t> perm{0, 1, 2, 3};
    do {
      SCOPED_TRACE(s.str() + " perm " + std::to_string(perm[0]) + std::to_string(perm[1]) +
                   std::to_string(perm[2]) + std::to_string(perm[3]));
      expect_matches_reference(
          "cpu", {random_tensor(s, DType::F32, 7)},
          one([perm](Graph& g, const auto& in) { return ir::permute(g, in[0], perm); }), kExact,
          kExact);
    } while (std::next_permutation(perm.begin(), perm.end()));
  }
}

TEST(Permute, CpuMatchesReferenceOnLargeTensorsAndOtherDtypes) {
  // Large enough for the threaded paths: attention-style (0, 2, 1, 3), batched transpose
  // with ragged tiles, a general gather, and 8-, 4-byte integer and f64 elements.
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {{{2, 33, 5, 17}, {0, 2, 1, 3}},
                                                                     {{5, 67, 43}, {0, 2, 1}},
                                                                     {{9, 31, 37}, {2, 0, 1}},
                                                                     {{67, 43}, {1, 0}}};
  for (const auto& [shape, perm] : cases)
    for (DType dt : {DType::F32, DType::F64, DType::I32, DType::I64}) {
      SCOPED_TRACE(shape.str() + " " + dtype_name(dt));
      const auto x = random_tensor(shape, dt, 3, -100, 100);
      // An init-capture: clang 14 cannot capture a structured binding.
      expect_matches_reference("cpu", {x}, one([perm = perm](Graph& g, const auto& in) {
                                 return ir::permute(g, in[0], perm);
                               }),
                               kExact, kExact);
    }
}

TEST(Permute, GradientsMatchFiniteDifferences) {
  expect_gradients_match_finite_differences({random_tensor({2, 3, 4}, DType::F64, 11)},
                                            one([](Graph& g, const auto& in) {
                                              return ir::permute(g, in[0], {2, 0, 1});
                                            }),
                                            {0});
}

TEST(Permute, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  expect_gradients_match_reference("cpu", {random_tensor({3, 5, 4, 7}, DType::F32, 12)},
                                   one([](Graph& g, const auto& in) {
                                     return ir::permute(g, in[0], {1, 3, 0, 2});
                                   }),
                                   {0}, kExact, kExact);
}

TEST(Permute, BadPermThrows) {
  Graph g;
  const ValueId x = g.input({{2, 3}, DType::F32}, "x");
  expect_error([&] { ir::permute(g, x, {0, 0}); }, {"Permute", "perm [0, 0]", "f32[2, 3]"});
  expect_error([&] { ir::permute(g, x, {0, 1, 2}); }, {"Permute", "f32[2, 3]"});
  expect_error([&] { ir::permute(g, x, {0, 2}); }, {"Permute", "f32[2, 3]"});
  EXPECT_THROW(ir::transpose(g, x, 0, 2), Error);
}

// ---- Slice / SliceBackward -----------------------------------------------------------------

TEST(Slice, HandValues) {
  const auto x = float_tensor({2, 4}, DType::F32, {1, 2, 3, 4, 5, 6, 7, 8});
  const auto y = run_graph("reference", {x}, [](Graph& g, const auto& in) {
    return std::vector<ValueId>{ir::slice(g, in[0], -1, 1, 3), ir::slice(g, in[0], 0, 1, 2),
                                ir::slice(g, in[0], 1, 2, 2)};
  });
  EXPECT_EQ(y[2].type.shape, (Shape{2, 0}));
  expect_values(y, {{2, 3, 6, 7}, {5, 6, 7, 8}, {}}, 0, 0);
}

TEST(Slice, CpuMatchesReference) {
  const auto x = random_tensor({5, 13, 7}, DType::F32, 21);
  expect_matches_reference(
      "cpu", {x},
      [](Graph& g, const auto& in) {
        return std::vector<ValueId>{ir::slice(g, in[0], 0, 1, 4), ir::slice(g, in[0], 1, 3, 10),
                                    ir::slice(g, in[0], 2, 6, 7), ir::slice(g, in[0], 1, 5, 5)};
      },
      kExact, kExact);
  // Large blocks, split into pieces across threads.
  const auto big = random_tensor({3, 41, 1000}, DType::F64, 22);
  expect_matches_reference(
      "cpu", {big}, one([](Graph& g, const auto& in) { return ir::slice(g, in[0], 1, 2, 39); }),
      kExact, kExact);
}

TEST(Slice, GradientsMatchFiniteDifferences) {
  expect_gradients_match_finite_differences(
      {random_tensor({3, 5, 2}, DType::F64, 23)},
      [](Graph& g, const auto& in) {
        return std::vector<ValueId>{ir::slice(g, in[0], 1, 1, 4), ir::slice(g, in[0], 0, 2, 3)};
      },
      {0});
}

TEST(Slice, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  expect_gradients_match_reference(
      "cpu", {random_tensor({4, 9, 11}, DType::F32, 24)},
      one([](Graph& g, const auto& in) { return ir::slice(g, in[0], 1, 2, 7); }), {0}, kExact,
      kExact);
}

TEST(Slice, BadRangeThrows) {
  Graph g;
  const ValueId x = g.input({{2, 5}, DType::F32}, "x");
  expect_error([&] { ir::slice(g, x, 1, 2, 6); }, {"Slice", "[2, 6)", "f32[2, 5]"});
  expect_error([&] { ir::slice(g, x, 1, 3, 2); }, {"Slice", "f32[2, 5]"});
  expect_error([&] { ir::slice(g, x, 2, 0, 1); }, {"Slice", "axis 2"});
}

TEST(SliceBackward, HandValues) {
  const auto dy = float_tensor({2, 1}, DType::F32, {7, 9});
  const auto dx = run_graph("reference", {dy}, one([](Graph& g, const auto& in) {
                              return ir::slice_backward(g, in[0], {2, 3}, 1, 1);
                            }));
  EXPECT_EQ(dx[0].type.shape, (Shape{2, 3}));
  expect_values(dx, {{0, 7, 0, 0, 9, 0}}, 0, 0);
}

TEST(SliceBackward, CpuMatchesReference) {
  const auto dy = random_tensor({5, 6, 7}, DType::F32, 31);
  expect_matches_reference(
      "cpu", {dy},
      [](Graph& g, const auto& in) {
        return std::vector<ValueId>{ir::slice_backward(g, in[0], {5, 13, 7}, 1, 4),
                                    ir::slice_backward(g, in[0], {9, 6, 7}, 0, 0),
                                    ir::slice_backward(g, in[0], {5, 6, 11}, -1, 4)};
      },
      kExact, kExact);
}

TEST(SliceBackward, GradientsMatchFiniteDifferences) {
  expect_gradients_match_finite_differences({random_tensor({2, 3, 2}, DType::F64, 32)},
                                            one([](Graph& g, const auto& in) {
                                              return ir::slice_backward(g, in[0], {2, 7, 2}, 1, 3);
                                            }),
                                            {0});
}

TEST(SliceBackward, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  expect_gradients_match_reference("cpu", {random_tensor({3, 4, 5}, DType::F32, 33)},
                                   one([](Graph& g, const auto& in) {
                                     return ir::slice_backward(g, in[0], {3, 4, 9}, 2, 2);
                                   }),
                                   {0}, kExact, kExact);
}

TEST(SliceBackward, MisfitThrows) {
  Graph g;
  const ValueId dy = g.input({{2, 3}, DType::F32}, "dy");
  expect_error(
      [&] {
        ir::slice_backward(g, dy, {2, 4}, 1, 2);
      },
      {"SliceBackward", "f32[2, 3]", "f32[2, 4]"});
  expect_error(
      [&] {
        ir::slice_backward(g, dy, {3, 4}, 1, 0);
      },
      {"SliceBackward", "f32[2, 3]", "f32[3, 4]"});
  expect_error([&] { ir::slice_backward(g, dy, {2, 3, 1}, 1, 0); }, {"SliceBackward", "ranks"});
}

// ---- Concat ------------------------------------------------------------------------------------

TEST(Concat, HandValues) {
  const auto a = float_tensor({2, 1}, DType::F32, {1, 2});
  const auto b = float_tensor({2, 2}, DType::F32, {3, 4, 5, 6});
  const auto c = float_tensor({1, 2}, DType::F32, {7, 8});
  const auto y = run_graph("reference", {a, b, c}, [](Graph& g, const auto& in) {
    return std::vector<ValueId>{ir::concat(g, {in[0], in[1]}, -1),
                                ir::concat(g, {in[1], in[2]}, 0)};
  });
  EXPECT_EQ(y[0].type.shape, (Shape{2, 3}));
  EXPECT_EQ(y[1].type.shape, (Shape{3, 2}));
  expect_values(y, {{1, 3, 4, 2, 5, 6}, {3, 4, 5, 6, 7, 8}}, 0, 0);
}

TEST(Concat, CpuMatchesReference) {
  for (int axis : {0, 1, 2}) {
    SCOPED_TRACE(axis);
    Shape sa{3, 5, 7}, sb = sa, sc = sa;
    sb[axis] = 2;
    sc[axis] = 9;
    expect_matches_reference(
        "cpu",
        {random_tensor(sa, DType::F32, 41), random_tensor(sb, DType::F32, 42),
         random_tensor(sc, DType::F32, 43)},
        one([axis](Graph& g, const auto& in) { return ir::concat(g, in, axis); }), kExact, kExact);
  }
}

TEST(Concat, GradientsMatchFiniteDifferences) {
  expect_gradients_match_finite_differences(
      {random_tensor({2, 3, 2}, DType::F64, 44), random_tensor({2, 1, 2}, DType::F64, 45),
       random_tensor({2, 4, 2}, DType::F64, 46)},
      one([](Graph& g, const auto& in) { return ir::concat(g, in, 1); }), {0, 1, 2});
}

TEST(Concat, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  expect_gradients_match_reference(
      "cpu", {random_tensor({3, 5, 7}, DType::F32, 47), random_tensor({3, 5, 2}, DType::F32, 48)},
      one([](Graph& g, const auto& in) { return ir::concat(g, in, 2); }), {0, 1}, kExact, kExact);
}

TEST(Concat, MismatchThrows) {
  Graph g;
  const ValueId a = g.input({{2, 3}, DType::F32}, "a");
  const ValueId b = g.input({{4, 5}, DType::F32}, "b");
  const ValueId c = g.input({{2, 5}, DType::F64}, "c");
  expect_error([&] { ir::concat(g, {a, b}, 1); }, {"Concat", "f32[2, 3]", "f32[4, 5]"});
  expect_error([&] { ir::concat(g, {a, c}, 1); }, {"Concat", "dtypes", "f32[2, 3]", "f64[2, 5]"});
  EXPECT_THROW(ir::concat(g, {}, 0), Error);
}

// ---- MatMul / linear ---------------------------------------------------------------------------

TEST(MatMul, HandValues) {
  // a = [[1, 2, 3], [4, 5, 6]], b = [[1, 2], [3, 4], [5, 6]]: a b = [[22, 28], [49, 64]].
  const auto a = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto b = float_tensor({3, 2}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto y = run_graph("reference", {a, b}, [](Graph& g, const auto& in) {
    const ValueId at = ir::transpose(g, in[0], 0, 1), bt = ir::transpose(g, in[1], 0, 1);
    return std::vector<ValueId>{ir::matmul(g, in[0], in[1]), ir::matmul(g, at, in[1], true, false),
                                ir::matmul(g, in[0], bt, false, true),
                                ir::matmul(g, at, bt, true, true),
                                // b a = [[9, 12, 15], [19, 26, 33], [29, 40, 51]]
                                ir::matmul(g, in[1], in[0])};
  });
  const std::vector<double> ab{22, 28, 49, 64};
  expect_values(y, {ab, ab, ab, ab, {9, 12, 15, 19, 26, 33, 29, 40, 51}}, 0, 0);
}

TEST(MatMul, HandValuesBatched) {
  // a [2, 1, 2]: batch 0 = [1, 2], batch 1 = [3, 4]. Shared b [2, 2] = [[1, 0], [1, 1]];
  // batched b [2, 2, 1] = [[1], [2]] and [[0], [-1]].
  const auto a = float_tensor({2, 1, 2}, DType::F64, {1, 2, 3, 4});
  const auto shared = float_tensor({2, 2}, DType::F64, {1, 0, 1, 1});
  const auto batched = float_tensor({2, 2, 1}, DType::F64, {1, 2, 0, -1});
  const auto y = run_graph("reference", {a, shared, batched}, [](Graph& g, const auto& in) {
    return std::vector<ValueId>{ir::matmul(g, in[0], in[1]), ir::matmul(g, in[0], in[2])};
  });
  EXPECT_EQ(y[0].type.shape, (Shape{2, 1, 2}));
  EXPECT_EQ(y[1].type.shape, (Shape{2, 1, 1}));
  expect_values(y, {{3, 2, 7, 4}, {5, -4}}, 0, 0);
}

// Operand shapes for a [lead..., M, K] and b [K, N] (or batched), honouring the trans flags.
struct MatMulCase {
  std::vector<int64_t> lead;
  int64_t m, k, n;
  bool ta, tb, batched_b;
  Shape a_shape() const {
    std::vector<int64_t> d = lead;
    d.push_back(ta ? k : m);
    d.push_back(ta ? m : k);
    return Shape(d);
  }
  Shape b_shape() const {
    std::vector<int64_t> d = batched_b ? lead : std::vector<int64_t>{};
    d.push_back(tb ? n : k);
    d.push_back(tb ? k : n);
    return Shape(d);
  }
  std::string str() const {
    return "a" + a_shape().str() + " b" + b_shape().str() + (ta ? " ta" : "") + (tb ? " tb" : "");
  }
  Builder builder() const {
    return one([ta = ta, tb = tb](Graph& g, const auto& in) {
      return ir::matmul(g, in[0], in[1], ta, tb);
    });
  }
};

std::vector<MatMulCase> matmul_cases(std::vector<int64_t> lead, int64_t m, int64_t k, int64_t n) {
  std::vector<MatMulCase> cases;
  for (bool batched_b : {false, true})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        if (lead.empty() && batched_b) continue;
        cases.push_back({lead, m, k, n, ta, tb, batched_b});
      }
  return cases;
}

TEST(MatMul, CpuMatchesReference) {
  for (const auto& [lead, m, k, n] :
       std::vector<std::tuple<std::vector<int64_t>, int64_t, int64_t, int64_t>>{{{}, 37, 29, 23},
                                                                                {{3}, 17, 13, 11},
                                                                                {{2, 3}, 9, 31, 5},
                                                                                {{2}, 1, 7, 1},
                                                                                {{2}, 3, 0, 4}}) {
    for (const MatMulCase& c : matmul_cases(lead, m, k, n)) {
      SCOPED_TRACE(c.str());
      const auto a = random_tensor(c.a_shape(), DType::F32, 51);
      const auto b = random_tensor(c.b_shape(), DType::F32, 52);
      expect_matches_reference("cpu", {a, b}, c.builder(), kGemmRtol, kGemmAtol);
      expect_matches_reference("cpu", {with_dtype(a, DType::F64), with_dtype(b, DType::F64)},
                               c.builder(), kGemm64Rtol, kGemm64Atol);
    }
  }
}

TEST(MatMul, GradientsMatchFiniteDifferences) {
  for (const auto& lead : std::vector<std::vector<int64_t>>{{}, {2}, {2, 1}}) {
    for (const MatMulCase& c : matmul_cases(lead, 3, 4, 2)) {
      SCOPED_TRACE(c.str());
      expect_gradients_match_finite_differences(
          {random_tensor(c.a_shape(), DType::F64, 53), random_tensor(c.b_shape(), DType::F64, 54)},
          c.builder(), {0, 1});
    }
  }
}

TEST(MatMul, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  for (const MatMulCase& c : matmul_cases({3, 2}, 7, 5, 6)) {
    SCOPED_TRACE(c.str());
    expect_gradients_match_reference(
        "cpu",
        {random_tensor(c.a_shape(), DType::F32, 55), random_tensor(c.b_shape(), DType::F32, 56)},
        c.builder(), {0, 1}, kGemmRtol, kGemmAtol);
  }
}

TEST(MatMul, ShapeErrorsThrow) {
  Graph g;
  const ValueId a = g.input({{2, 3}, DType::F32}, "a");
  const ValueId b = g.input({{4, 5}, DType::F32}, "b");
  const ValueId a3 = g.input({{2, 3, 4}, DType::F32}, "a3");
  const ValueId b3 = g.input({{3, 4, 5}, DType::F32}, "b3");
  const ValueId d = g.input({{3, 5}, DType::F64}, "d");
  const ValueId v = g.input({{3}, DType::F32}, "v");
  expect_error([&] { ir::matmul(g, a, b); },
               {"MatMul", "inner dimensions", "f32[2, 3]", "f32[4, 5]"});
  expect_error([&] { ir::matmul(g, a, b, true, true); }, {"MatMul", "inner dimensions"});
  expect_error([&] { ir::matmul(g, a3, b3); },
               {"MatMul", "leading dims", "f32[2, 3, 4]", "f32[3, 4, 5]"});
  expect_error([&] { ir::matmul(g, a, b3); }, {"MatMul", "f32[2, 3]", "f32[3, 4, 5]"});
  expect_error([&] { ir::matmul(g, a, d); }, {"MatMul", "dtypes", "f32[2, 3]", "f64[3, 5]"});
  expect_error([&] { ir::matmul(g, a, v); }, {"MatMul", "rank", "f32[2, 3]", "f32[3]"});
}

TEST(Linear, HandValues) {
  // x [2, 3], w [2, 3] = [[1, 0, 1], [0, 2, 0]], bias [10, 20].
  const auto x = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto w = float_tensor({2, 3}, DType::F32, {1, 0, 1, 0, 2, 0});
  const auto bias = float_tensor({2}, DType::F32, {10, 20});
  const auto y = run_graph("reference", {x, w, bias}, [](Graph& g, const auto& in) {
    return std::vector<ValueId>{ir::linear(g, in[0], in[1], in[2]), ir::linear(g, in[0], in[1])};
  });
  expect_values(y, {{14, 24, 20, 30}, {4, 4, 10, 10}}, 0, 0);
}

TEST(Linear, CpuMatchesReference) {
  const auto x = random_tensor({3, 5, 17}, DType::F32, 61);
  const auto w = random_tensor({13, 17}, DType::F32, 62);
  expect_matches_reference(
      "cpu", {x, w}, one([](Graph& g, const auto& in) { return ir::linear(g, in[0], in[1]); }),
      kGemmRtol, kGemmAtol);
  REQUIRE_CPU_KERNELS(OpKind::Add);
  const auto bias = random_tensor({13}, DType::F32, 63);
  expect_matches_reference("cpu", {x, w, bias}, one([](Graph& g, const auto& in) {
                             return ir::linear(g, in[0], in[1], in[2]);
                           }),
                           kGemmRtol, kGemmAtol);
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  expect_gradients_match_finite_differences(
      {random_tensor({2, 3, 4}, DType::F64, 64), random_tensor({5, 4}, DType::F64, 65),
       random_tensor({5}, DType::F64, 66)},
      one([](Graph& g, const auto& in) { return ir::linear(g, in[0], in[1], in[2]); }), {0, 1, 2});
  expect_gradients_match_finite_differences(
      {random_tensor({4}, DType::F64, 67), random_tensor({3, 4}, DType::F64, 68)},
      one([](Graph& g, const auto& in) { return ir::linear(g, in[0], in[1]); }), {0, 1});
}

TEST(Linear, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  expect_gradients_match_reference(
      "cpu",
      {random_tensor({3, 5, 17}, DType::F32, 69), random_tensor({13, 17}, DType::F32, 70),
       random_tensor({13}, DType::F32, 71)},
      one([](Graph& g, const auto& in) { return ir::linear(g, in[0], in[1], in[2]); }), {0, 1, 2},
      kGemmRtol, kGemmAtol);
}

TEST(Linear, ShapeErrorsThrow) {
  Graph g;
  const ValueId x = g.input({{2, 3}, DType::F32}, "x");
  const ValueId w = g.input({{4, 5}, DType::F32}, "w");
  const ValueId w_ok = g.input({{4, 3}, DType::F32}, "w_ok");
  const ValueId bias = g.input({{5}, DType::F32}, "bias");
  expect_error([&] { ir::linear(g, x, w); }, {"linear", "f32[2, 3]", "f32[4, 5]"});
  expect_error([&] { ir::linear(g, x, w_ok, bias); }, {"linear", "bias", "f32[5]"});
}

// ---- Embedding / EmbeddingBackward -------------------------------------------------------------

TEST(Embedding, HandValues) {
  const auto w = float_tensor({4, 2}, DType::F32, {0, 1, 10, 11, 20, 21, 30, 31});
  const auto ids32 = int_tensor({3}, DType::I32, {3, 0, 3});
  const auto ids64 = int_tensor({2, 2}, DType::I64, {1, 2, 2, 0});
  const auto y = run_graph("reference", {w, ids32, ids64}, [](Graph& g, const auto& in) {
    return std::vector<ValueId>{ir::embedding(g, in[0], in[1]), ir::embedding(g, in[0], in[2])};
  });
  EXPECT_EQ(y[0].type.shape, (Shape{3, 2}));
  EXPECT_EQ(y[1].type.shape, (Shape{2, 2, 2}));
  expect_values(y, {{30, 31, 0, 1, 30, 31}, {10, 11, 20, 21, 20, 21, 0, 1}}, 0, 0);
}

TEST(Embedding, CpuMatchesReference) {
  for (DType ids_dtype : {DType::I32, DType::I64}) {
    SCOPED_TRACE(dtype_name(ids_dtype));
    const auto w = random_tensor({37, 19}, DType::F32, 81);
    const auto ids = random_tensor({5, 7}, ids_dtype, 82, 0, 37);
    expect_matches_reference("cpu", {w, ids}, one([](Graph& g, const auto& in) {
                               return ir::embedding(g, in[0], in[1]);
                             }),
                             kExact, kExact);
    // Large enough for the threaded row copies.
    const auto w_big = random_tensor({50, 300}, DType::F64, 83);
    const auto ids_big = random_tensor({41}, ids_dtype, 84, 0, 50);
    expect_matches_reference("cpu", {w_big, ids_big}, one([](Graph& g, const auto& in) {
                               return ir::embedding(g, in[0], in[1]);
                             }),
                             kExact, kExact);
  }
}

TEST(Embedding, GradientsMatchFiniteDifferences) {
  // Repeated ids: their gradients add up in the same row.
  expect_gradients_match_finite_differences(
      {random_tensor({5, 3}, DType::F64, 85), int_tensor({2, 3}, DType::I64, {4, 0, 4, 2, 4, 0})},
      one([](Graph& g, const auto& in) { return ir::embedding(g, in[0], in[1]); }), {0});
}

TEST(Embedding, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  expect_gradients_match_reference(
      "cpu",
      {random_tensor({11, 23}, DType::F32, 86), random_tensor({6, 9}, DType::I32, 87, 0, 11)},
      one([](Graph& g, const auto& in) { return ir::embedding(g, in[0], in[1]); }), {0}, 1e-6,
      1e-6);
}

TEST(Embedding, IdOutOfRangeThrowsAtRun) {
  const auto w = random_tensor({4, 2}, DType::F32, 88);
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    for (int64_t bad : {4, -1}) {
      const auto ids = int_tensor({3}, DType::I64, {0, bad, 1});
      const std::string id = "id " + std::to_string(bad);
      expect_error(
          [&] {
            run_graph(backend, {w, ids},
                      one([](Graph& g, const auto& in) { return ir::embedding(g, in[0], in[1]); }));
          },
          {"Embedding", id.c_str(), "V = 4"});
      const auto dy = random_tensor({3, 2}, DType::F32, 89);
      expect_error(
          [&] {
            run_graph(backend, {ids, dy}, one([](Graph& g, const auto& in) {
                        return ir::embedding_backward(g, in[0], in[1], 4);
                      }));
          },
          {"EmbeddingBackward", id.c_str(), "V = 4"});
    }
  }
}

TEST(Embedding, ShapeErrorsThrow) {
  Graph g;
  const ValueId w = g.input({{4, 2}, DType::F32}, "w");
  const ValueId w1 = g.input({{4}, DType::F32}, "w1");
  const ValueId fids = g.input({{3}, DType::F32}, "fids");
  const ValueId ids = g.input({{3}, DType::I32}, "ids");
  expect_error([&] { ir::embedding(g, w, fids); },
               {"Embedding", "i32 or i64", "f32[4, 2]", "f32[3]"});
  expect_error([&] { ir::embedding(g, w1, ids); }, {"Embedding", "f32[4]", "i32[3]"});
}

TEST(EmbeddingBackward, HandValues) {
  // Rows 0 and 1 collect dy rows by id; row 2 gets no id and stays zero.
  const auto ids = int_tensor({3}, DType::I32, {1, 0, 1});
  const auto dy = float_tensor({3, 2}, DType::F32, {1, 2, 3, 4, 5, 6});
  expect_values(run_graph("reference", {ids, dy}, one([](Graph& g, const auto& in) {
                            return ir::embedding_backward(g, in[0], in[1], 3);
                          })),
                {{3, 4, 6, 8, 0, 0}}, 0, 0);
}

TEST(EmbeddingBackward, CpuMatchesReference) {
  // Rows add in the same order on both backends, so f32 results agree to rounding of
  // identical sums; many duplicates (54 ids over 11 rows) and some rows with none.
  for (DType ids_dtype : {DType::I32, DType::I64}) {
    SCOPED_TRACE(dtype_name(ids_dtype));
    const auto ids = random_tensor({6, 9}, ids_dtype, 91, 0, 11);
    const auto dy = random_tensor({6, 9, 23}, DType::F32, 92);
    expect_matches_reference("cpu", {ids, dy}, one([](Graph& g, const auto& in) {
                               return ir::embedding_backward(g, in[0], in[1], 13);
                             }),
                             kExact, kExact);
    const auto ids_big = random_tensor({300}, ids_dtype, 93, 0, 200);
    const auto dy_big = random_tensor({300, 64}, DType::F64, 94);
    expect_matches_reference("cpu", {ids_big, dy_big}, one([](Graph& g, const auto& in) {
                               return ir::embedding_backward(g, in[0], in[1], 200);
                             }),
                             kExact, kExact);
  }
}

TEST(EmbeddingBackward, GradientsMatchFiniteDifferences) {
  expect_gradients_match_finite_differences(
      {int_tensor({2, 2}, DType::I32, {2, 0, 2, 1}), random_tensor({2, 2, 3}, DType::F64, 95)},
      one([](Graph& g, const auto& in) { return ir::embedding_backward(g, in[0], in[1], 4); }),
      {1});
}

TEST(EmbeddingBackward, CpuGradientsMatchReference) {
  REQUIRE_CPU_GRADIENT_KERNELS();
  expect_gradients_match_reference(
      "cpu",
      {random_tensor({7, 5}, DType::I64, 96, 0, 9), random_tensor({7, 5, 6}, DType::F32, 97)},
      one([](Graph& g, const auto& in) { return ir::embedding_backward(g, in[0], in[1], 9); }), {1},
      kExact, kExact);
}

TEST(EmbeddingBackward, ShapeErrorsThrow) {
  Graph g;
  const ValueId ids = g.input({{3}, DType::I32}, "ids");
  const ValueId dy = g.input({{4, 2}, DType::F32}, "dy");
  expect_error([&] { ir::embedding_backward(g, ids, dy, 5); },
               {"EmbeddingBackward", "i32[3]", "f32[4, 2]"});
  expect_error([&] { ir::embedding_backward(g, dy, dy, 5); }, {"EmbeddingBackward", "i32 or i64"});
}

}  // namespace
}  // namespace solo::test
