// CUDA layout, matmul and lookup kernels against the cpu backend: Permute (every rank-4
// permutation, tile transposes, every element size), Slice, SliceBackward, Concat, MatMul
// (cuBLASLt: every transpose combination, shared and batched b, a large GEMM, bf16),
// Embedding and EmbeddingBackward, and gradients through autograd against the reference.
// Every test skips when no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
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

// f32 GEMM with f32 accumulation (no TF32) vs OpenBLAS: summation order only.
constexpr double kGemmRtol = 1e-4, kGemmAtol = 1e-4;

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

std::string str(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + ")";
}

// ---- Permute -----------------------------------------------------------------------------------

TEST(CudaPermute, EveryRank4Permutation) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  std::vector<int64_t> perm = {0, 1, 2, 3};
  uint64_t seed = 1;
  do {
    const std::vector<int64_t> p = perm;
    for (const Shape& s : {Shape{2, 3, 4, 5}, Shape{3, 1, 7, 2}, Shape{2, 8, 3, 16}}) {
      const auto x = random_tensor(s, DType::F32, seed++);
      cuda_vs_cpu({x}, one([p](Graph& g, const auto& in) { return ir::permute(g, in[0], p); }), 0,
                  0, "permute " + s.str() + " " + str(p));
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
}

TEST(CudaPermute, EveryElementSizeAndTiles) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  struct Case {
    Shape shape;
    std::vector<int64_t> perm;
  };
  const std::vector<Case> cases = {
      {{70, 33}, {1, 0}},                              // tile transpose, partial tiles
      {{3, 37, 45}, {0, 2, 1}},                        // batched tile transpose
      {{3, 300, 513}, {0, 2, 1}},                      // large
      {{2, 5, 1, 64}, {0, 3, 2, 1}},                   // size-1 dims dropped, then a tile transpose
      {{2, 3, 4, 8}, {0, 2, 1, 3}},                    // last dim kept: rows moved in wide units
      {{2, 3, 4, 3}, {0, 2, 1, 3}},                    // last dim kept, odd row bytes
      {{4, 6, 5, 7}, {1, 2, 0, 3}},                    // merged runs
      {{2, 3, 2, 3, 2, 3, 2}, {6, 0, 5, 1, 4, 2, 3}},  // rank 7
      {{1, 1, 1}, {2, 0, 1}},                          // a copy
      {{5, 0, 3}, {2, 1, 0}},                          // empty
  };
  uint64_t seed = 100;
  for (DType dt : {DType::F32, DType::BF16, DType::I64, DType::Bool, DType::F64})
    for (const auto& c : cases) {
      const auto x = random_tensor(c.shape, dt, seed++, -4, 4);
      const auto p = c.perm;
      cuda_vs_cpu({x}, one([p](Graph& g, const auto& in) { return ir::permute(g, in[0], p); }), 0,
                  0, std::string("permute ") + dtype_name(dt) + " " + c.shape.str() + " " + str(p));
    }
}

// ---- Slice, SliceBackward, Concat ------------------------------------------------------------

TEST(CudaSlice, AxesAndDtypes) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 200;
  for (DType dt : {DType::F32, DType::BF16, DType::I32, DType::Bool}) {
    const auto x = random_tensor({4, 9, 6}, dt, seed++, -4, 4);
    Builder build = [](Graph& g, const std::vector<ValueId>& in) {
      return std::vector<ValueId>{ir::slice(g, in[0], 0, 1, 4), ir::slice(g, in[0], 1, 3, 8),
                                  ir::slice(g, in[0], 2, 1, 4), ir::slice(g, in[0], -1, 5, 6),
                                  ir::slice(g, in[0], 1, 5, 5), ir::slice(g, in[0], 1, 0, 9)};
    };
    cuda_vs_cpu({x}, build, 0, 0, std::string("slice ") + dtype_name(dt));
  }
  const auto big = random_tensor({7, 1000, 33}, DType::F32, seed++);
  cuda_vs_cpu({big}, one([](Graph& g, const auto& in) { return ir::slice(g, in[0], 1, 17, 901); }),
              0, 0, "slice large");
}

TEST(CudaSliceBackward, ZeroFilledWindow) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 300;
  struct Case {
    Shape dy;
    Shape full;
    int axis;
    int64_t start;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4}, {2, 7, 4}, 1, 2}, {{1, 5}, {4, 5}, 0, 3}, {{3, 2}, {3, 9}, 1, 0},
      {{3, 2}, {3, 9}, 1, 7},       {{3, 0}, {3, 9}, 1, 4}, {{5, 300, 17}, {5, 700, 17}, 1, 123}};
  for (DType dt : {DType::F32, DType::BF16, DType::I64})
    for (const auto& c : cases) {
      const auto dy = random_tensor(c.dy, dt, seed++, -4, 4);
      const Case cc = c;
      cuda_vs_cpu({dy}, one([cc](Graph& g, const auto& in) {
                    return ir::slice_backward(g, in[0], cc.full, cc.axis, cc.start);
                  }),
                  0, 0, std::string("slice_backward ") + dtype_name(dt) + " " + c.full.str());
    }
}

TEST(CudaConcat, AxesAndDtypes) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 400;
  for (DType dt : {DType::F32, DType::BF16, DType::I32, DType::Bool})
    for (int axis : {0, 1, 2}) {
      Shape s1{2, 3, 4}, s2{2, 3, 4}, s3{2, 3, 4};
      s1 = axis == 0 ? Shape{1, 3, 4} : axis == 1 ? Shape{2, 1, 4} : Shape{2, 3, 1};
      s3 = axis == 0 ? Shape{5, 3, 4} : axis == 1 ? Shape{2, 6, 4} : Shape{2, 3, 7};
      const auto a = random_tensor(s1, dt, seed++, -4, 4), b = random_tensor(s2, dt, seed++, -4, 4),
                 c = random_tensor(s3, dt, seed++, -4, 4);
      cuda_vs_cpu({a, b, c}, one([axis](Graph& g, const auto& in) {
                    return ir::concat(g, {in[0], in[1], in[2]}, axis);
                  }),
                  0, 0, std::string("concat ") + dtype_name(dt) + " axis " + std::to_string(axis));
    }
  const auto a = random_tensor({64, 300, 48}, DType::F32, seed++);
  const auto b = random_tensor({64, 300, 80}, DType::F32, seed++);
  cuda_vs_cpu({a, b}, one([](Graph& g, const auto& in) {
                return ir::concat(g, {in[0], in[1]}, -1);
              }),
              0, 0, "concat large");
}

// ---- MatMul ------------------------------------------------------------------------------------

// a [lead..., M, K] (transposed if ta), b [K, N] or [lead..., K, N] (transposed if tb).
std::pair<Shape, Shape> matmul_shapes(const std::vector<int64_t>& lead, bool batched_b, int64_t m,
                                      int64_t n, int64_t k, bool ta, bool tb) {
  std::vector<int64_t> sa = lead, sb = batched_b ? lead : std::vector<int64_t>{};
  sa.push_back(ta ? k : m);
  sa.push_back(ta ? m : k);
  sb.push_back(tb ? n : k);
  sb.push_back(tb ? k : n);
  return {Shape(sa), Shape(sb)};
}

Builder matmul_builder(bool ta, bool tb) {
  return one([ta, tb](Graph& g, const auto& in) { return ir::matmul(g, in[0], in[1], ta, tb); });
}

TEST(CudaMatMul, EveryTransposeSharedAndBatchedB) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  struct Case {
    std::vector<int64_t> lead;
    bool batched_b;
    int64_t m, n, k;
  };
  // Odd sizes make batch strides and row pitches unaligned to 16 bytes.
  const std::vector<Case> cases = {
      {{}, false, 5, 7, 3},     {{}, false, 64, 48, 80}, {{3}, false, 5, 7, 9},
      {{2, 3}, false, 4, 6, 5}, {{3}, true, 5, 7, 9},    {{2, 3}, true, 17, 33, 65},
      {{1}, true, 8, 8, 8},     {{4}, false, 1, 1, 1},   {{2}, true, 31, 1, 129}};
  uint64_t seed = 500;
  for (const auto& c : cases)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const auto [sa, sb] = matmul_shapes(c.lead, c.batched_b, c.m, c.n, c.k, ta, tb);
        const auto a = random_tensor(sa, DType::F32, seed++),
                   b = random_tensor(sb, DType::F32, seed++);
        const std::string what = "matmul " + sa.str() + " x " + sb.str() + " ta " +
                                 std::to_string(ta) + " tb " + std::to_string(tb);
        cuda_vs_cpu({a, b}, matmul_builder(ta, tb), kGemmRtol, kGemmAtol, what);
        // bf16 in and out, f32 accumulation: one bf16 rounding of the result.
        cuda_bf16_vs_cpu({a, b}, matmul_builder(ta, tb), 1e-2,
                         2e-2 * std::sqrt(static_cast<double>(c.k)), what);
      }
}

TEST(CudaMatMul, Large) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  // M = 512, K = 768, N = 1000, and the same as a batch of 4 x 128 rows with a shared b.
  const auto a = random_tensor({512, 768}, DType::F32, 600);
  const auto b = random_tensor({768, 1000}, DType::F32, 601);
  cuda_vs_cpu({a, b}, matmul_builder(false, false), kGemmRtol, 1e-3, "matmul 512x768x1000");
  const auto wt = random_tensor({1000, 768}, DType::F32, 602);
  cuda_vs_cpu({a, wt}, matmul_builder(false, true), kGemmRtol, 1e-3, "matmul 512x768x1000 tb");
  const auto a3 = random_tensor({4, 128, 768}, DType::F32, 603);
  cuda_vs_cpu({a3, b}, matmul_builder(false, false), kGemmRtol, 1e-3, "matmul batched 4x128");
  cuda_bf16_vs_cpu({a, b}, matmul_builder(false, false), 1e-2, 0.5, "matmul 512x768x1000");
  // Weight gradient shape: a^T [768, 512] @ dy [512, 1000].
  cuda_vs_cpu({a, random_tensor({512, 1000}, DType::F32, 604)}, matmul_builder(true, false),
              kGemmRtol, 1e-3, "matmul ta 768x512x1000");
}

TEST(CudaMatMul, EmptyDims) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  // K == 0: zeros; M == 0 or N == 0: empty outputs.
  const HostTensor a{{{3, 0}, DType::F32}, {}}, b{{{0, 4}, DType::F32}, {}};
  cuda_vs_cpu({a, b}, matmul_builder(false, false), 0, 0, "matmul K = 0");
  const HostTensor a0{{{0, 5}, DType::F32}, {}};
  cuda_vs_cpu({a0, random_tensor({5, 4}, DType::F32, 700)}, matmul_builder(false, false), 0, 0,
              "matmul M = 0");
  const HostTensor b0{{{5, 0}, DType::F32}, {}};
  cuda_vs_cpu({random_tensor({3, 5}, DType::F32, 701), b0}, matmul_builder(false, false), 0, 0,
              "matmul N = 0");
}

TEST(CudaMatMul, GradientsMatchReference) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 800;
  for (bool batched_b : {false, true})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const auto [sa, sb] = matmul_shapes({2, 3}, batched_b, 4, 5, 6, ta, tb);
        const auto a = random_tensor(sa, DType::F32, seed++),
                   b = random_tensor(sb, DType::F32, seed++);
        SCOPED_TRACE("matmul grad " + sa.str() + " x " + sb.str() + " ta " + std::to_string(ta) +
                     " tb " + std::to_string(tb));
        expect_gradients_match_reference("cuda", {a, b}, matmul_builder(ta, tb), {0, 1}, 1e-4,
                                         1e-4);
      }
  // linear (matmul with trans_b plus a bias add).
  const auto x = random_tensor({2, 5, 8}, DType::F32, seed++);
  const auto w = random_tensor({3, 8}, DType::F32, seed++);
  const auto bias = random_tensor({3}, DType::F32, seed++);
  expect_gradients_match_reference("cuda", {x, w, bias}, one([](Graph& g, const auto& in) {
                                     return ir::linear(g, in[0], in[1], in[2]);
                                   }),
                                   {0, 1, 2}, 1e-4, 1e-4);
}

// ---- Embedding -------------------------------------------------------------------------------

TEST(CudaEmbedding, IdsAndDtypes) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  const std::vector<int64_t> id_values = {0, 10, 3, 3, 7, 1, 10, 0, 5, 2};
  uint64_t seed = 900;
  for (DType id_dt : {DType::I32, DType::I64})
    for (DType dt : {DType::F32, DType::BF16, DType::F64})
      for (int64_t dim : {7, 8, 64}) {
        const auto w = random_tensor({11, dim}, dt, seed++);
        const auto ids = int_tensor({2, 5}, id_dt, id_values);
        cuda_vs_cpu({w, ids},
                    one([](Graph& g, const auto& in) { return ir::embedding(g, in[0], in[1]); }), 0,
                    0, std::string("embedding ") + dtype_name(dt) + " ids " + dtype_name(id_dt));
      }
}

TEST(CudaEmbedding, OutOfRangeIdsGiveZeroRows) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  // The cpu backend raises; the GPU cannot without a sync and writes zeros instead.
  const auto w = float_tensor({2, 3}, DType::F32, {1, 2, 3, 4, 5, 6});
  const auto ids = int_tensor({3}, DType::I64, {1, 5, -1});
  expect_values(run_graph("cuda", {w, ids}, one([](Graph& g, const auto& in) {
                            return ir::embedding(g, in[0], in[1]);
                          })),
                {{4, 5, 6, 0, 0, 0, 0, 0, 0}}, 0, 0);
}

TEST(CudaEmbeddingBackward, ScatterAdd) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 1000;
  const std::vector<int64_t> id_values = {0, 10, 3, 3, 7, 1, 10, 0, 5, 3};
  for (DType id_dt : {DType::I32, DType::I64})
    for (int64_t dim : {7, 64}) {
      const auto ids = int_tensor({2, 5}, id_dt, id_values);
      const auto dy = random_tensor({2, 5, dim}, DType::F32, seed++);
      Builder build = one([](Graph& g, const auto& in) {
        return ir::embedding_backward(g, in[0], in[1], 12);  // row 11 gets nothing
      });
      cuda_vs_cpu({ids, dy}, build, 1e-5, 1e-6, "embedding_backward");
      cuda_bf16_vs_cpu({ids, dy}, build, kGemmRtol * 100, 2e-2, "embedding_backward");
    }
  // Many repeats of few ids, large.
  std::vector<int64_t> many(4096);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int64_t>((i * 7) % 13);
  const auto ids = int_tensor({4096}, DType::I32, many);
  const auto dy = random_tensor({4096, 96}, DType::F32, seed++);
  cuda_vs_cpu({ids, dy}, one([](Graph& g, const auto& in) {
                return ir::embedding_backward(g, in[0], in[1], 13);
              }),
              1e-4, 1e-4, "embedding_backward repeats");
}

TEST(CudaEmbedding, GradientsMatchReference) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  const auto w = random_tensor({9, 6}, DType::F32, 1100);
  const auto ids = int_tensor({2, 4}, DType::I64, {1, 8, 1, 0, 3, 3, 3, 7});
  expect_gradients_match_reference("cuda", {w, ids}, one([](Graph& g, const auto& in) {
                                     return ir::embedding(g, in[0], in[1]);
                                   }),
                                   {0}, 1e-5, 1e-6);
  // Permute, slice and concat backward run Permute, SliceBackward and Slice.
  const auto x = random_tensor({3, 4, 5}, DType::F32, 1101);
  expect_gradients_match_reference("cuda", {x}, one([](Graph& g, const auto& in) {
                                     const ValueId p = ir::permute(g, in[0], {2, 0, 1});
                                     const ValueId s = ir::slice(g, p, 1, 1, 3);
                                     return ir::concat(g, {s, ir::slice(g, p, 1, 0, 1)}, 1);
                                   }),
                                   {0}, 1e-6, 1e-6);
}

}  // namespace
}  // namespace solo::test
