// CUDA elementwise, broadcast and reduction kernels against the cpu backend: every op in f32
// on odd and broadcast shapes, integer dtypes exactly, bf16 against cpu f32 on the same
// bf16-rounded inputs, and gradients through autograd against the reference backend.
// Every test skips when no CUDA device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "op_check.h"
#include "solo/backend/backend.h"
#include "solo/core/error.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"

namespace solo::test {
namespace {

using ir::Graph;
using ir::ValueId;

// f32 elementwise: libm vs CUDA math differ by an ulp or two.
constexpr double kRtol = 1e-5, kAtol = 1e-6;
// bf16 outputs vs f32 on the same inputs: one bf16 rounding (2^-8) plus f32 noise.
constexpr double kBf16Rtol = 2e-2, kBf16Atol = 1e-2;

void expect_near(const std::vector<HostTensor>& got, const std::vector<HostTensor>& want,
                 double rtol, double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_EQ(got[k].type.shape, want[k].type.shape) << what << " output " << k;
    int reported = 0;
    for (size_t i = 0; i < got[k].values.size(); ++i) {
      const double a = got[k].values[i], e = want[k].values[i];
      const bool ok = (std::isnan(a) && std::isnan(e)) || (std::isinf(e) && a == e) ||
                      std::abs(a - e) <= atol + rtol * std::abs(e);
      if (!ok && reported++ < 5)
        ADD_FAILURE() << what << ": output " << k << " element " << i << ": cuda " << a << ", cpu "
                      << e << " (rtol " << rtol << ", atol " << atol << ")";
    }
  }
}

// cuda and cpu run the same graph on the same inputs.
void cuda_vs_cpu(const std::vector<HostTensor>& in, const Builder& build, double rtol, double atol,
                 const std::string& what) {
  expect_near(run_graph("cuda", in, build), run_graph("cpu", in, build), rtol, atol, what);
}

// Float inputs rounded to bf16; cuda runs them as bf16, cpu as f32 on the same values.
void cuda_bf16_vs_cpu(const std::vector<HostTensor>& in, const Builder& build, double rtol,
                      double atol, const std::string& what) {
  std::vector<HostTensor> f32 = in, b16 = in;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!is_floating(in[i].type.dtype)) continue;
    for (double& v : f32[i].values) v = bf16_to_f32(f32_to_bf16(static_cast<float>(v)));
    f32[i].type.dtype = DType::F32;
    b16[i] = f32[i];
    b16[i].type.dtype = DType::BF16;
  }
  expect_near(run_graph("cuda", b16, build), run_graph("cpu", f32, build), rtol, atol,
              what + " (bf16)");
}

Builder one(std::function<ValueId(Graph&, const std::vector<ValueId>&)> f) {
  return [f](Graph& g, const std::vector<ValueId>& in) { return std::vector<ValueId>{f(g, in)}; };
}

std::string str(const Shape& s) {
  return s.str();
}

// Broadcasting pairs: equal, trailing vector, both sides broadcast, scalar-like, rank 4.
const std::vector<std::pair<Shape, Shape>> kPairs = {
    {{3, 5, 7}, {3, 5, 7}},    {{3, 5, 7}, {7}}, {{3, 1, 7}, {5, 1}},  {{1}, {4, 3}},
    {{2, 3, 4, 5}, {3, 1, 5}}, {{}, {6}},        {{67, 129}, {67, 1}}, {{1000, 513}, {513}}};

using BinaryFn = ValueId (*)(Graph&, ValueId, ValueId);
const std::vector<std::pair<const char*, BinaryFn>> kBinary = {
    {"add", ir::add},         {"sub", ir::sub},         {"mul", ir::mul},
    {"maximum", ir::maximum}, {"minimum", ir::minimum}, {"less", ir::less}};

// ---- full --------------------------------------------------------------------------------

TEST(CudaFull, EveryDtype) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  Builder build = [](Graph& g, const std::vector<ValueId>&) {
    return std::vector<ValueId>{
        ir::full(g, {2, 2}, DType::F32, 1.5), ir::full(g, {3}, DType::F64, -0.25),
        ir::full(g, {5}, DType::I32, 7),      ir::full(g, {2}, DType::I64, -3),
        ir::full(g, {3}, DType::Bool, 2.0),   ir::full(g, {7}, DType::BF16, 1.00390625),
        ir::full(g, {3}, DType::F16, 0.1),    ir::full(g, {}, DType::F32, 4),
        ir::full(g, {0, 3}, DType::F32, 1),   ir::full(g, {301, 257}, DType::F32, -2.5),
        ir::full(g, {70001}, DType::I64, 9),  ir::full(g, {33}, DType::F32, 0.0),
        ir::full(g, {9}, DType::Bool, 0.0)};
  };
  cuda_vs_cpu({}, build, 0, 0, "full");
}

// ---- binary ------------------------------------------------------------------------------

TEST(CudaBinary, F32Broadcasting) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 1;
  for (const auto& [sa, sb] : kPairs)
    for (const auto& [name, fn] : kBinary) {
      const auto a = random_tensor(sa, DType::F32, seed++),
                 b = random_tensor(sb, DType::F32, seed++);
      const BinaryFn f = fn;
      cuda_vs_cpu({a, b}, one([f](Graph& g, const auto& in) { return f(g, in[0], in[1]); }), kRtol,
                  kAtol, std::string(name) + " " + str(sa) + " " + str(sb));
      cuda_vs_cpu({b, a}, one([f](Graph& g, const auto& in) { return f(g, in[0], in[1]); }), kRtol,
                  kAtol, std::string(name) + " " + str(sb) + " " + str(sa));
    }
}

TEST(CudaBinary, F32Div) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 100;
  for (const auto& [sa, sb] : kPairs) {
    const auto a = random_tensor(sa, DType::F32, seed++);
    const auto b = random_tensor(sb, DType::F32, seed++, 0.5, 2.0);
    cuda_vs_cpu({a, b}, one([](Graph& g, const auto& in) { return ir::div(g, in[0], in[1]); }),
                kRtol, kAtol, "div " + str(sa) + " " + str(sb));
  }
}

TEST(CudaBinary, IntegersExact) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 200;
  for (DType dt : {DType::I32, DType::I64})
    for (const auto& [sa, sb] : kPairs)
      for (const auto& [name, fn] : kBinary) {
        const auto a = random_tensor(sa, dt, seed++, -50, 50);
        const auto b = random_tensor(sb, dt, seed++, -50, 50);
        const BinaryFn f = fn;
        cuda_vs_cpu({a, b}, one([f](Graph& g, const auto& in) { return f(g, in[0], in[1]); }), 0, 0,
                    std::string(name) + " " + dtype_name(dt) + " " + str(sa) + " " + str(sb));
      }
}

TEST(CudaBinary, Bf16) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 300;
  for (const auto& [sa, sb] : kPairs) {
    for (const auto& [name, fn] : kBinary) {
      const auto a = random_tensor(sa, DType::F32, seed++),
                 b = random_tensor(sb, DType::F32, seed++);
      const BinaryFn f = fn;
      cuda_bf16_vs_cpu({a, b}, one([f](Graph& g, const auto& in) { return f(g, in[0], in[1]); }),
                       kBf16Rtol, kBf16Atol, std::string(name) + " " + str(sa) + " " + str(sb));
    }
    const auto a = random_tensor(sa, DType::F32, seed++);
    const auto b = random_tensor(sb, DType::F32, seed++, 0.5, 2.0);
    cuda_bf16_vs_cpu({a, b}, one([](Graph& g, const auto& in) { return ir::div(g, in[0], in[1]); }),
                     kBf16Rtol, kBf16Atol, "div " + str(sa) + " " + str(sb));
  }
}

// ---- where -------------------------------------------------------------------------------

TEST(CudaWhere, CondOfEveryDtypeBroadcast) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  Builder build = one([](Graph& g, const auto& in) { return ir::where(g, in[0], in[1], in[2]); });
  uint64_t seed = 400;
  // cond values include -0 and fractions (nonzero = true).
  const std::vector<double> cv = {0, 1, -0.0, 0.25, -3, 0, 2, 0, 1, -1, 0, 5};
  for (DType cd :
       {DType::Bool, DType::F32, DType::BF16, DType::F16, DType::F64, DType::I32, DType::I64})
    for (DType vd : {DType::F32, DType::I32, DType::I64, DType::BF16, DType::Bool}) {
      HostTensor cond{{{3, 1, 4}, cd}, cv};
      if (!is_floating(cd))
        for (double& v : cond.values) v = std::trunc(v);
      const auto a = random_tensor({2, 1, 1, 4}, vd, seed++, -5, 5);
      const auto b = random_tensor({5, 1}, vd, seed++, -5, 5);
      cuda_vs_cpu({cond, a, b}, build, 0, 0,
                  std::string("where cond ") + dtype_name(cd) + " values " + dtype_name(vd));
    }
  // Equal shapes, large.
  const auto cond = random_tensor({1001, 37}, DType::I32, seed++, -1, 2);
  const auto a = random_tensor({1001, 37}, DType::F32, seed++);
  const auto b = random_tensor({1001, 37}, DType::F32, seed++);
  cuda_vs_cpu({cond, a, b}, build, 0, 0, "where large");
  // masked_fill, as attention masks use it.
  cuda_vs_cpu({a, cond},
              one([](Graph& g, const auto& in) { return ir::masked_fill(g, in[0], in[1], -1e9); }),
              0, 0, "masked_fill");
}

// ---- scalar and unary ops ------------------------------------------------------------------

using UnaryBuild = std::function<ValueId(Graph&, ValueId)>;
struct UnaryCase {
  const char* name;
  UnaryBuild f;
  double lo, hi;  // input range
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"add_scalar", [](Graph& g, ValueId x) { return ir::add_scalar(g, x, 0.75); }, -2, 2},
      {"mul_scalar", [](Graph& g, ValueId x) { return ir::mul_scalar(g, x, -1.5); }, -2, 2},
      {"pow 2", [](Graph& g, ValueId x) { return ir::pow_scalar(g, x, 2.0); }, -2, 2},
      {"pow 3", [](Graph& g, ValueId x) { return ir::pow_scalar(g, x, 3.0); }, -2, 2},
      {"pow 0.5", [](Graph& g, ValueId x) { return ir::pow_scalar(g, x, 0.5); }, 0.1, 3},
      {"pow -1", [](Graph& g, ValueId x) { return ir::pow_scalar(g, x, -1.0); }, 0.5, 3},
      {"pow 1.7", [](Graph& g, ValueId x) { return ir::pow_scalar(g, x, 1.7); }, 0.1, 3},
      {"pow 1", [](Graph& g, ValueId x) { return ir::pow_scalar(g, x, 1.0); }, -2, 2},
      {"neg", [](Graph& g, ValueId x) { return ir::neg(g, x); }, -2, 2},
      {"exp", [](Graph& g, ValueId x) { return ir::exp(g, x); }, -5, 5},
      {"log", [](Graph& g, ValueId x) { return ir::log(g, x); }, 0.01, 10},
      {"sqrt", [](Graph& g, ValueId x) { return ir::sqrt(g, x); }, 0.01, 10},
      {"rsqrt", [](Graph& g, ValueId x) { return ir::rsqrt(g, x); }, 0.01, 10},
      {"silu", [](Graph& g, ValueId x) { return ir::silu(g, x); }, -8, 8},
      {"gelu", [](Graph& g, ValueId x) { return ir::gelu(g, x, false); }, -6, 6},
      {"gelu tanh", [](Graph& g, ValueId x) { return ir::gelu(g, x, true); }, -6, 6},
  };
}

TEST(CudaUnary, F32) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 500;
  for (const auto& uc : unary_cases())
    for (const Shape& s : {Shape{}, Shape{7}, Shape{33, 65}, Shape{3, 100003}}) {
      const auto x = random_tensor(s, DType::F32, seed++, uc.lo, uc.hi);
      const UnaryBuild f = uc.f;
      cuda_vs_cpu({x}, one([f](Graph& g, const auto& in) { return f(g, in[0]); }), kRtol, kAtol,
                  std::string(uc.name) + " " + str(s));
    }
}

TEST(CudaUnary, Bf16) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 600;
  for (const auto& uc : unary_cases()) {
    const auto x = random_tensor({37, 129}, DType::F32, seed++, uc.lo, uc.hi);
    const UnaryBuild f = uc.f;
    cuda_bf16_vs_cpu({x}, one([f](Graph& g, const auto& in) { return f(g, in[0]); }), kBf16Rtol,
                     kBf16Atol, uc.name);
  }
}

TEST(CudaUnary, IntegerScalarOpsAndNeg) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  for (DType dt : {DType::I32, DType::I64}) {
    const auto x = random_tensor({5, 77}, dt, 700, -1000, 1000);
    Builder build = [](Graph& g, const std::vector<ValueId>& in) {
      return std::vector<ValueId>{ir::add_scalar(g, in[0], 3), ir::mul_scalar(g, in[0], -2),
                                  ir::neg(g, in[0])};
    };
    cuda_vs_cpu({x}, build, 0, 0, std::string("int scalar ops ") + dtype_name(dt));
  }
}

TEST(CudaActivationBackward, F32AndBf16) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::silu_backward(g, in[0], in[1]),
                                ir::gelu_backward(g, in[0], in[1], false),
                                ir::gelu_backward(g, in[0], in[1], true)};
  };
  for (const Shape& s : {Shape{9}, Shape{129, 257}}) {
    const auto x = random_tensor(s, DType::F32, 800, -6, 6);
    const auto dy = random_tensor(s, DType::F32, 801);
    cuda_vs_cpu({x, dy}, build, kRtol, kAtol, "activation backward " + str(s));
    cuda_bf16_vs_cpu({x, dy}, build, kBf16Rtol, kBf16Atol, "activation backward " + str(s));
  }
}

TEST(CudaSwiglu, ForwardAndBackwardF32AndBf16) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    std::vector<ValueId> out = ir::swiglu_backward(g, in[0], in[1], in[2]);
    out.push_back(ir::swiglu(g, in[0], in[1]));
    return out;
  };
  // 9: the element-wise tail only; 129 x 257: 16-byte packs plus a tail.
  for (const Shape& s : {Shape{9}, Shape{129, 257}}) {
    const auto gate = random_tensor(s, DType::F32, 810, -6, 6);
    const auto up = random_tensor(s, DType::F32, 811), dy = random_tensor(s, DType::F32, 812);
    cuda_vs_cpu({gate, up, dy}, build, kRtol, kAtol, "swiglu " + str(s));
    cuda_bf16_vs_cpu({gate, up, dy}, build, kBf16Rtol, kBf16Atol, "swiglu " + str(s));
  }
}

// ---- cast --------------------------------------------------------------------------------

TEST(CudaCast, EveryDtypePair) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Fractions truncate toward zero, NaN -> 0, out-of-range values saturate.
  const std::vector<double> float_values = {-3.75, -1,   -0.5, 0,    0.5,   1,   2.5,
                                            127.9, 3e9,  -3e9, 1e20, -1e20, nan, 65504,
                                            1e-3,  -0.0, 255,  256,  -129,  7e4};
  const std::vector<double> int_values = {-5, 0,     7,         300, 2147483647, -2147483648, 1,
                                          -1, 65536, 123456789, 12,  13,         14,          15,
                                          16, 17,    18,        19,  20,         21};
  const std::vector<DType> all = {DType::F32, DType::F64, DType::BF16, DType::F16,
                                  DType::I32, DType::I64, DType::Bool};
  for (DType from : all)
    for (DType to : all) {
      HostTensor x{{{4, 5}, from}, is_floating(from) ? float_values : int_values};
      if (from == DType::Bool)
        for (double& v : x.values) v = v != 0;
      cuda_vs_cpu({x}, one([to](Graph& g, const auto& in) { return ir::cast(g, in[0], to); }), 0, 0,
                  std::string("cast ") + dtype_name(from) + " -> " + dtype_name(to));
    }
  // Large, to cover the grid-stride loop.
  const auto x = random_tensor({1000, 1001}, DType::F32, 900, -100, 100);
  for (DType to : all)
    cuda_vs_cpu({x}, one([to](Graph& g, const auto& in) { return ir::cast(g, in[0], to); }), 0, 0,
                std::string("cast large f32 -> ") + dtype_name(to));
}

// ---- reductions --------------------------------------------------------------------------

struct ReduceCase {
  Shape shape;
  std::vector<int64_t> axes;
  bool keepdim;
};

// Row sums (short and long rows, few and many), column sums (bias gradients, split into
// chunks), middle axes, generic patterns, everything, and size-1 dims.
const std::vector<ReduceCase> kReduceCases = {
    {{37, 53}, {1}, false},
    {{37, 53}, {0}, false},
    {{37, 53}, {}, false},
    {{4, 300, 5}, {1}, true},
    {{3, 4, 5, 6}, {0, 2}, false},
    {{3, 4, 5, 6}, {1, 3}, true},
    {{3, 4, 5, 6}, {0, 1, 2, 3}, true},
    {{2, 1, 7}, {1}, false},
    {{1, 1}, {0, 1}, false},
    {{5, 1, 3}, {1}, false},
    {{8192, 768}, {0}, false},
    {{4, 100000}, {1}, false},
    {{1000000}, {}, false},
    {{2, 3000, 70}, {1}, false},
    {{1024, 4096}, {1}, false},
    {{3, 1000, 3}, {0, 2}, false},
    {{64, 33, 300}, {0, 1}, false},
};

// Sums of R uniform [-1, 1) terms in different orders: error grows like sqrt(R).
double reduce_atol(const ReduceCase& rc) {
  int64_t r = 1;
  for (int64_t a : rc.axes) r *= rc.shape[static_cast<int>(a)];
  if (rc.axes.empty()) r = rc.shape.numel();
  return 1e-5 * std::sqrt(static_cast<double>(r)) + 1e-6;
}

TEST(CudaReduce, SumAndMeanF32) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 1000;
  for (const auto& rc : kReduceCases) {
    const auto x = random_tensor(rc.shape, DType::F32, seed++);
    const auto axes = rc.axes;
    const bool keep = rc.keepdim;
    Builder build = [axes, keep](Graph& g, const std::vector<ValueId>& in) {
      return std::vector<ValueId>{ir::sum(g, in[0], axes, keep), ir::mean(g, in[0], axes, keep)};
    };
    cuda_vs_cpu({x}, build, 1e-4, reduce_atol(rc), "sum/mean " + str(rc.shape));
  }
}

TEST(CudaReduce, SumIntegersExact) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 1100;
  for (DType dt : {DType::I32, DType::I64})
    for (const auto& rc : kReduceCases) {
      const auto x = random_tensor(rc.shape, dt, seed++, -100, 100);
      const auto axes = rc.axes;
      const bool keep = rc.keepdim;
      cuda_vs_cpu({x}, one([axes, keep](Graph& g, const auto& in) {
                    return ir::sum(g, in[0], axes, keep);
                  }),
                  0, 0, std::string("int sum ") + dtype_name(dt) + " " + str(rc.shape));
    }
}

TEST(CudaReduce, SumAndMeanBf16) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 1200;
  for (const auto& rc : kReduceCases) {
    // Positive values keep the relative error of the f32-accumulated sum meaningful.
    const auto x = random_tensor(rc.shape, DType::F32, seed++, 0.0, 1.0);
    const auto axes = rc.axes;
    const bool keep = rc.keepdim;
    Builder build = [axes, keep](Graph& g, const std::vector<ValueId>& in) {
      return std::vector<ValueId>{ir::sum(g, in[0], axes, keep), ir::mean(g, in[0], axes, keep)};
    };
    cuda_bf16_vs_cpu({x}, build, 1e-2, 1e-2, "sum/mean " + str(rc.shape));
  }
}

TEST(CudaReduce, EmptyInputs) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  const HostTensor x{{{5, 0, 3}, DType::F32}, {}};
  Builder build = [](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::sum(g, in[0], {1}), ir::mean(g, in[0], {1}),
                                ir::sum(g, in[0], {0})};
  };
  cuda_vs_cpu({x}, build, 0, 0, "empty reductions");  // 0, NaN (0 / 0), empty
}

// ---- broadcast_to ------------------------------------------------------------------------

TEST(CudaBroadcastTo, ShapesAndDtypes) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 1, 5}, {2, 3, 4, 5}}, {{}, {7}},           {{6}, {6}},
      {{1, 1}, {4, 3}},          {{513}, {300, 513}}, {{300, 1}, {300, 513}}};
  uint64_t seed = 1300;
  for (DType dt : {DType::F32, DType::I64, DType::Bool, DType::BF16})
    for (const auto& [from, to] : cases) {
      const auto x = random_tensor(from, dt, seed++, -3, 3);
      const Shape target = to;
      cuda_vs_cpu({x}, one([target](Graph& g, const auto& in) {
                    return ir::broadcast_to(g, in[0], target);
                  }),
                  0, 0, std::string("broadcast_to ") + dtype_name(dt) + " " + str(from));
    }
}

// ---- gradients through autograd ------------------------------------------------------------

TEST(CudaElementwiseGradients, AddMulSumMatchReference) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  const auto a = random_tensor({4, 3, 5}, DType::F32, 1400);
  const auto b = random_tensor({3, 1}, DType::F32, 1401);
  expect_gradients_match_reference(
      "cuda", {a, b}, one([](Graph& g, const auto& in) { return ir::add(g, in[0], in[1]); }),
      {0, 1}, 1e-5, 1e-5);
  expect_gradients_match_reference(
      "cuda", {a, b}, one([](Graph& g, const auto& in) { return ir::mul(g, in[0], in[1]); }),
      {0, 1}, 1e-5, 1e-5);
  expect_gradients_match_reference("cuda", {a}, one([](Graph& g, const auto& in) {
                                     return ir::sum(g, in[0], {0, 2}, true);
                                   }),
                                   {0}, 1e-5, 1e-5);
  expect_gradients_match_reference(
      "cuda", {a}, one([](Graph& g, const auto& in) { return ir::mean(g, in[0], {1}); }), {0}, 1e-5,
      1e-5);
  const auto x = random_tensor({6, 7}, DType::F32, 1402);
  expect_gradients_match_reference("cuda", {x}, one([](Graph& g, const auto& in) {
                                     return ir::gelu(g, ir::silu(g, in[0]), true);
                                   }),
                                   {0}, 1e-5, 1e-5);
}

}  // namespace
}  // namespace solo::test
