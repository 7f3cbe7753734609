// The native bf16 GEMM of the cpu backend (AVX512_BF16): against an f64 product of the same
// bf16 values over odd shapes, every transpose combination, batched a with a shared b and
// batched b, with bf16 and f32 results; and the dispatch: a bf16 MatMul on the cpu backend
// takes the native kernel whenever the CPU has the instructions. Skips on other CPUs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "op_check.h"
#include "solo/backend/cpu/gemm_bf16.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"

namespace solo {
namespace {

struct Case {
  int64_t m, n, k;
};
// Odd sizes cross every packing edge: partial micro-tiles in M (8 rows) and N (32 columns),
// odd K (a half-empty last pair), K = 0.
const Case kCases[] = {{1, 1, 1}, {7, 13, 5},   {33, 65, 17}, {128, 256, 96},
                       {5, 9, 0}, {3, 40, 301}, {130, 33, 64}};

// Stored operand of logical shape [rows, cols] (transposed storage when trans), per batch.
struct Operand {
  int64_t rows, cols, batch;
  bool trans;
  std::vector<bf16> data;
  float at(int64_t p, int64_t r, int64_t c) const {
    const int64_t base = p * rows * cols;
    return bf16_to_f32(data[static_cast<size_t>(base + (trans ? c * rows + r : r * cols + c))]);
  }
  Bf16Matrix view() const {
    return {data.data(), trans ? rows : cols, trans, batch > 1 ? rows * cols : 0};
  }
};

// Values in [-1, 1), or small integers, whose products and sums are exact in f32.
Operand make_operand(int64_t rows, int64_t cols, int64_t batch, bool trans, unsigned seed,
                     bool integers) {
  Operand o{rows, cols, batch, trans, std::vector<bf16>(static_cast<size_t>(batch * rows * cols))};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> real(-1.f, 1.f);
  std::uniform_int_distribution<int> small(-2, 2);
  for (bf16& x : o.data) x = f32_to_bf16(integers ? static_cast<float>(small(rng)) : real(rng));
  return o;
}

float read(const std::vector<uint16_t>& y, DType dt, size_t i) {
  if (dt == DType::F32) {
    float f;
    std::memcpy(&f, reinterpret_cast<const char*>(y.data()) + 4 * i, 4);
    return f;
  }
  return bf16_to_f32(bf16{y[i]});
}

// Runs gemm_bf16 on op(a) [M, K] x op(b) [K, N] for `batch` batches (b shared when
// b_batch == 1) and checks every element against the f64 product of the same bf16 values.
// Tolerance: the f32 sum of K exact products errs by at most K 2^-24 sum_k |a_k b_k| (taken
// twice), and a bf16 result adds one rounding, 2^-8 relative. Integer operands have exact
// f32 sums: the result must equal the f64 product rounded once to the result dtype.
void check(const Case& c, bool ta, bool tb, int64_t batch, int64_t b_batch, DType y_dtype,
           bool integers) {
  const Operand a = make_operand(c.m, c.k, batch, ta, 1, integers);
  const Operand b = make_operand(c.k, c.n, b_batch, tb, 2, integers);
  const size_t count = static_cast<size_t>(batch * c.m * c.n);
  std::vector<uint16_t> y(count * (y_dtype == DType::F32 ? 2 : 1), 0xffff);  // NaN fill
  gemm_bf16(batch, c.m, c.n, c.k, a.view(), b.view(), y.data(), y_dtype);
  const double u32 = std::ldexp(1.0, -24), rounding = y_dtype == DType::BF16 ? 0x1p-8 : 0.0;
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        double exact = 0, magnitude = 0;
        for (int64_t q = 0; q < c.k; ++q) {
          const double prod = static_cast<double>(a.at(p, i, q)) * b.at(b_batch > 1 ? p : 0, q, j);
          exact += prod;
          magnitude += std::abs(prod);
        }
        const size_t at = static_cast<size_t>((p * c.m + i) * c.n + j);
        const float got = read(y, y_dtype, at);
        if (integers) {
          const float want = y_dtype == DType::F32
                                 ? static_cast<float>(exact)
                                 : bf16_to_f32(f32_to_bf16(static_cast<float>(exact)));
          ASSERT_EQ(got, want) << "p " << p << " i " << i << " j " << j;
          continue;
        }
        const double tol =
            rounding * std::abs(exact) + 2.0 * static_cast<double>(c.k) * u32 * magnitude;
        ASSERT_LE(std::abs(got - exact), tol) << "p " << p << " i " << i << " j " << j;
      }
}

class GemmBf16 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
};

TEST_F(GemmBf16, MatchesF64ProductOverShapesAndTransposes) {
  for (const Case& c : kCases)
    for (int t = 0; t < 4; ++t)
      for (DType dt : {DType::BF16, DType::F32}) {
        SCOPED_TRACE(testing::Message() << c.m << "x" << c.n << "x" << c.k << " ta " << (t & 1)
                                        << " tb " << (t >> 1) << " " << dtype_name(dt));
        check(c, t & 1, t >> 1, 1, 1, dt, false);
        check(c, t & 1, t >> 1, 1, 1, dt, true);
      }
}

TEST_F(GemmBf16, BatchedAWithSharedB) {
  for (const Case& c : {Case{7, 13, 5}, Case{33, 65, 17}, Case{20, 70, 129}})
    for (int t = 0; t < 4; ++t) {
      SCOPED_TRACE(testing::Message() << c.m << "x" << c.n << "x" << c.k << " t " << t);
      check(c, t & 1, t >> 1, 3, 1, DType::BF16, false);
      check(c, t & 1, t >> 1, 3, 1, DType::F32, true);
    }
}

TEST_F(GemmBf16, BatchedB) {
  for (const Case& c : {Case{7, 13, 5}, Case{33, 65, 17}, Case{20, 70, 129}})
    for (int t = 0; t < 4; ++t) {
      SCOPED_TRACE(testing::Message() << c.m << "x" << c.n << "x" << c.k << " t " << t);
      check(c, t & 1, t >> 1, 3, 3, DType::BF16, false);
      check(c, t & 1, t >> 1, 3, 3, DType::F32, true);
    }
}

// A B wider than one packed column block (8 MiB of pairs): K 4096, N 1100 needs two.
TEST_F(GemmBf16, SeveralColumnBlocks) {
  check({9, 1100, 4096}, false, true, 1, 1, DType::BF16, true);
  check({9, 1100, 4096}, true, false, 2, 1, DType::F32, true);
}

// ---- dispatch through the cpu backend -------------------------------------------------

using test::HostTensor;

std::vector<ir::ValueId> matmul_graph(ir::Graph& g, const std::vector<ir::ValueId>& in, bool ta,
                                      bool tb) {
  return {ir::matmul(g, in[0], in[1], ta, tb)};
}

// A bf16 MatMul on the cpu backend runs the native kernel (once per op: batched a with a
// shared b folds into one GEMM), and matches the widened reference within bf16 rounding.
TEST_F(GemmBf16, CpuMatMulTakesTheNativeKernel) {
  const char* env = std::getenv("SOLO_CPU_BF16_GEMM");
  if (env && std::string(env) == "0") GTEST_SKIP() << "switched off by SOLO_CPU_BF16_GEMM=0";
  ASSERT_TRUE(native_bf16_gemm_enabled());
  struct Shapes {
    Shape a, b;
    bool ta, tb;
  };
  const Shapes shapes[] = {{{33, 17}, {65, 17}, false, true},
                           {{2, 3, 17, 33}, {17, 65}, true, false},
                           {{2, 3, 33, 17}, {2, 3, 65, 17}, false, true}};
  for (const Shapes& s : shapes) {
    const std::vector<HostTensor> in = {test::random_tensor(s.a, DType::BF16, 3),
                                        test::random_tensor(s.b, DType::BF16, 4)};
    const auto build = [&](ir::Graph& g, const std::vector<ir::ValueId>& v) {
      return matmul_graph(g, v, s.ta, s.tb);
    };
    const uint64_t before = native_bf16_gemm_count();
    test::expect_matches_reference("cpu", in, build, 0x1p-7, 1e-6);
    EXPECT_EQ(native_bf16_gemm_count(), before + 1) << "the bf16 MatMul ran widened";
  }
}

// Switched off (as the benchmarks do), or on f16 operands, MatMul runs widened.
TEST_F(GemmBf16, WidenedWhenOffOrNotBf16) {
  const std::vector<HostTensor> in = {test::random_tensor({9, 17}, DType::BF16, 5),
                                      test::random_tensor({17, 11}, DType::BF16, 6)};
  const auto build = [](ir::Graph& g, const std::vector<ir::ValueId>& v) {
    return matmul_graph(g, v, false, false);
  };
  const bool was_on = native_bf16_gemm_enabled();
  set_native_bf16_gemm(false);
  const uint64_t before = native_bf16_gemm_count();
  test::expect_matches_reference("cpu", in, build, 0x1p-7, 1e-6);
  EXPECT_EQ(native_bf16_gemm_count(), before);
  set_native_bf16_gemm(was_on);
  const std::vector<HostTensor> half = {test::with_dtype(in[0], DType::F16),
                                        test::with_dtype(in[1], DType::F16)};
  test::expect_matches_reference("cpu", half, build, 1e-3, 1e-4);
  EXPECT_EQ(native_bf16_gemm_count(), before);
}

}  // namespace
}  // namespace solo
