// CUDA kernels of the fused nn ops (Softmax, RmsNorm, LayerNorm, Rope, CrossEntropy and their
// Backward ops) against the cpu backend: f32 on the same inputs, and bf16 against cpu f32 on
// the same bf16-rounded inputs. Every test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
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

#define SKIP_WITHOUT_CUDA() \
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device"

// actual within atol_rel * max|expected| + rtol * |e| of expected, per output (NaN matches NaN,
// infinities must be equal).
void expect_near_outputs(const std::vector<HostTensor>& actual,
                         const std::vector<HostTensor>& expected, double rtol, double atol_rel,
                         const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t k = 0; k < actual.size(); ++k) {
    ASSERT_EQ(actual[k].type.shape, expected[k].type.shape) << what << " output " << k;
    double mx = 0;
    for (double e : expected[k].values)
      if (std::isfinite(e)) mx = std::max(mx, std::abs(e));
    const double atol = atol_rel * mx + 1e-30;
    int bad = 0;
    for (size_t i = 0; i < actual[k].values.size(); ++i) {
      const double a = actual[k].values[i], e = expected[k].values[i];
      const bool ok = (std::isnan(a) && std::isnan(e)) || (std::isinf(e) && a == e) ||
                      std::abs(a - e) <= atol + rtol * std::abs(e);
      if (!ok && bad++ < 5)
        ADD_FAILURE() << what << ": output " << k << " element " << i << ": got " << a
                      << ", expected " << e << " (rtol " << rtol << ", atol " << atol << ")";
    }
  }
}

// cuda vs cpu on the same (f32) inputs.
void expect_cuda_matches_cpu(const std::vector<HostTensor>& in, const Builder& build, double rtol,
                             double atol_rel) {
  expect_near_outputs(run_graph("cuda", in, build), run_graph("cpu", in, build), rtol, atol_rel,
                      "cuda f32 vs cpu");
}

// The f32 tensor rounded to bf16 values, typed `dt`.
HostTensor rounded_bf16(const HostTensor& t, DType dt) {
  HostTensor r = t;
  r.type.dtype = dt;
  for (double& v : r.values) v = bf16_to_f32(f32_to_bf16(static_cast<float>(v)));
  return r;
}

// cuda in bf16 (float inputs converted, except those listed in keep_f32) vs cpu in f32 on the
// same rounded values.
void expect_cuda_bf16_matches_cpu(const std::vector<HostTensor>& in, const Builder& build,
                                  double rtol, double atol_rel, std::set<size_t> keep_f32 = {}) {
  std::vector<HostTensor> in16, in32;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].type.dtype != DType::F32 || keep_f32.count(i)) {
      in16.push_back(in[i]);
      in32.push_back(in[i]);
    } else {
      in16.push_back(rounded_bf16(in[i], DType::BF16));
      in32.push_back(rounded_bf16(in[i], DType::F32));
    }
  }
  expect_near_outputs(run_graph("cuda", in16, build), run_graph("cpu", in32, build), rtol, atol_rel,
                      "cuda bf16 vs cpu f32");
}

// The gradient checks need the cuda elementwise kernels (another kernel group).
bool cuda_has_loss_kernels() {
  const auto cuda = make_backend("cuda");
  for (OpKind op : {OpKind::Full, OpKind::Add, OpKind::Mul, OpKind::Sum, OpKind::BroadcastTo})
    if (!cuda->has_kernel(op)) return false;
  return true;
}

// ---- builders -----------------------------------------------------------------------------

Builder softmax_both_axes(int axis) {  // forward and backward along one axis
  return [axis](Graph& g, const std::vector<ValueId>& in) {
    const ValueId y = ir::softmax(g, in[0], axis);
    return std::vector<ValueId>{y, ir::softmax_backward(g, y, in[1], axis)};
  };
}
Builder rms_norm_fwd_bwd(double eps) {  // in = (x, w, dy)
  return [eps](Graph& g, const std::vector<ValueId>& in) {
    auto r = ir::rms_norm_backward(g, in[0], in[1], in[2], eps);
    r.insert(r.begin(), ir::rms_norm(g, in[0], in[1], eps));
    return r;
  };
}
Builder layer_norm_fwd_bwd(double eps) {  // in = (x, w, b, dy)
  return [eps](Graph& g, const std::vector<ValueId>& in) {
    auto r = ir::layer_norm_backward(g, in[0], in[1], in[3], eps);
    r.insert(r.begin(), ir::layer_norm(g, in[0], in[1], in[2], eps));
    return r;
  };
}
Builder rope_both(double theta) {
  return [theta](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::rope(g, in[0], theta, false), ir::rope(g, in[0], theta, true)};
  };
}
// Llama 3 frequencies and a yarn-style attention factor: the host-computed frequencies and
// the factor reach the kernel.
Builder rope_scaled_both() {
  return [](Graph& g, const std::vector<ValueId>& in) {
    const RopeScaling s{.type = RopeType::Llama3,
                        .factor = 8,
                        .original_max_position_embeddings = 64,
                        .attention_factor = 1.1};
    return std::vector<ValueId>{ir::rope(g, in[0], s, false), ir::rope(g, in[0], s, true)};
  };
}
Builder cross_entropy_fwd_bwd(int64_t ignore) {  // in = (logits, labels, dloss)
  return [ignore](Graph& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{ir::cross_entropy(g, in[0], in[1], ignore),
                                ir::cross_entropy_backward(g, in[0], in[1], in[2], ignore)};
  };
}

// Labels [N] in [0, V) with every third row ignored (-100).
HostTensor labels_with_ignored(int64_t N, int64_t V, DType dt) {
  std::vector<int64_t> l(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) l[static_cast<size_t>(n)] = n % 3 == 1 ? -100 : (n * 7919) % V;
  return int_tensor({N}, dt, l);
}

// ---- softmax ------------------------------------------------------------------------------

TEST(CudaNn, SoftmaxF32) {
  SKIP_WITHOUT_CUDA();
  // Warp path (n <= 1024), block path (n = 3000) and a middle axis.
  for (const Shape& s : {Shape{7, 33}, Shape{3, 1024}, Shape{5, 3000}}) {
    SCOPED_TRACE(s.rank());
    expect_cuda_matches_cpu(
        {random_tensor(s, DType::F32, 1, -5, 5), random_tensor(s, DType::F32, 2)},
        softmax_both_axes(-1), 1e-5, 1e-6);
  }
  const Shape mid{3, 37, 5};
  expect_cuda_matches_cpu(
      {random_tensor(mid, DType::F32, 3, -5, 5), random_tensor(mid, DType::F32, 4)},
      softmax_both_axes(1), 1e-5, 1e-6);
  expect_cuda_matches_cpu(
      {random_tensor(mid, DType::F32, 5, -5, 5), random_tensor(mid, DType::F32, 6)},
      softmax_both_axes(0), 1e-5, 1e-6);
  // A -inf entry (masked score) gets exactly 0.
  auto x = random_tensor({2, 40}, DType::F32, 7);
  x.values[3] = -std::numeric_limits<double>::infinity();
  const auto y =
      run_graph("cuda", {x, random_tensor({2, 40}, DType::F32, 8)}, softmax_both_axes(-1));
  EXPECT_EQ(y[0].values[3], 0.0);
}

TEST(CudaNn, SoftmaxBf16) {
  SKIP_WITHOUT_CUDA();
  for (const Shape& s : {Shape{7, 33}, Shape{5, 3000}}) {
    expect_cuda_bf16_matches_cpu(
        {random_tensor(s, DType::F32, 11, -5, 5), random_tensor(s, DType::F32, 12)},
        softmax_both_axes(-1), 2e-2, 1e-2);
  }
  const Shape mid{3, 37, 5};
  expect_cuda_bf16_matches_cpu(
      {random_tensor(mid, DType::F32, 13, -5, 5), random_tensor(mid, DType::F32, 14)},
      softmax_both_axes(1), 2e-2, 1e-2);
}

// ---- rms norm / layer norm ------------------------------------------------------------------

TEST(CudaNn, RmsNormF32) {
  SKIP_WITHOUT_CUDA();
  // Odd D; many rows (several rows per block in the backward); D = 4096 (1024 threads).
  for (const Shape& s : {Shape{3, 5, 37}, Shape{1500, 64}, Shape{9, 4096}}) {
    const int64_t D = s[s.rank() - 1];
    expect_cuda_matches_cpu(
        {random_tensor(s, DType::F32, 21, -2, 2), random_tensor({D}, DType::F32, 22, 0.5, 1.5),
         random_tensor(s, DType::F32, 23)},
        rms_norm_fwd_bwd(1e-5), 1e-4, 1e-5);
  }
}

TEST(CudaNn, RmsNormBf16) {
  SKIP_WITHOUT_CUDA();
  const Shape s{300, 96};
  expect_cuda_bf16_matches_cpu(
      {random_tensor(s, DType::F32, 24, -2, 2), random_tensor({96}, DType::F32, 25, 0.5, 1.5),
       random_tensor(s, DType::F32, 26)},
      rms_norm_fwd_bwd(1e-6), 2e-2, 1e-2);
}

TEST(CudaNn, LayerNormF32) {
  SKIP_WITHOUT_CUDA();
  for (const Shape& s : {Shape{3, 5, 37}, Shape{1500, 64}, Shape{9, 4096}}) {
    const int64_t D = s[s.rank() - 1];
    expect_cuda_matches_cpu(
        {random_tensor(s, DType::F32, 31, -2, 3), random_tensor({D}, DType::F32, 32, 0.5, 1.5),
         random_tensor({D}, DType::F32, 33), random_tensor(s, DType::F32, 34)},
        layer_norm_fwd_bwd(1e-5), 1e-4, 1e-5);
  }
}

TEST(CudaNn, LayerNormBf16) {
  SKIP_WITHOUT_CUDA();
  const Shape s{300, 96};
  expect_cuda_bf16_matches_cpu(
      {random_tensor(s, DType::F32, 35, -2, 3), random_tensor({96}, DType::F32, 36, 0.5, 1.5),
       random_tensor({96}, DType::F32, 37), random_tensor(s, DType::F32, 38)},
      layer_norm_fwd_bwd(1e-5), 2e-2, 1e-2);
}

// ---- rope ---------------------------------------------------------------------------------

TEST(CudaNn, RopeF32) {
  SKIP_WITHOUT_CUDA();
  // T = 700 reaches angles of hundreds of radians (the table is computed in double).
  expect_cuda_matches_cpu({random_tensor({2, 700, 3, 64}, DType::F32, 41)}, rope_both(10000), 1e-5,
                          1e-6);
  expect_cuda_matches_cpu({random_tensor({1, 9, 5, 6}, DType::F32, 42)}, rope_both(500000), 1e-5,
                          1e-6);
  expect_cuda_matches_cpu({random_tensor({2, 300, 3, 32}, DType::F32, 44)}, rope_scaled_both(),
                          1e-5, 1e-6);
}

TEST(CudaNn, RopeBf16) {
  SKIP_WITHOUT_CUDA();
  expect_cuda_bf16_matches_cpu({random_tensor({2, 300, 3, 64}, DType::F32, 43)}, rope_both(10000),
                               2e-2, 1e-2);
}

// ---- cross entropy ------------------------------------------------------------------------

TEST(CudaNn, CrossEntropyF32) {
  SKIP_WITHOUT_CUDA();
  const HostTensor dloss = float_tensor({}, DType::F32, {1.7});
  for (DType ldt : {DType::I32, DType::I64}) {
    SCOPED_TRACE(dtype_name(ldt));
    // V = 32000 (a Llama vocabulary), ignored rows; and a small odd V.
    expect_cuda_matches_cpu({random_tensor({12, 32000}, DType::F32, 51, -4, 4),
                             labels_with_ignored(12, 32000, ldt), dloss},
                            cross_entropy_fwd_bwd(-100), 1e-5, 1e-6);
    expect_cuda_matches_cpu(
        {random_tensor({37, 11}, DType::F32, 52, -4, 4), labels_with_ignored(37, 11, ldt), dloss},
        cross_entropy_fwd_bwd(-100), 1e-5, 1e-6);
  }
  // A custom ignore_index.
  expect_cuda_matches_cpu(
      {random_tensor({5, 7}, DType::F32, 53), int_tensor({5}, DType::I64, {0, 3, 6, 3, 2}), dloss},
      cross_entropy_fwd_bwd(3), 1e-5, 1e-6);
}

TEST(CudaNn, CrossEntropyAllIgnoredIsNaN) {
  SKIP_WITHOUT_CUDA();
  const auto out = run_graph(
      "cuda",
      {random_tensor({4, 10}, DType::F32, 54),
       int_tensor({4}, DType::I32, {-100, -100, -100, -100}), float_tensor({}, DType::F32, {1.0})},
      cross_entropy_fwd_bwd(-100));
  EXPECT_TRUE(std::isnan(out[0].values[0]));
  for (double v : out[1].values) EXPECT_EQ(v, 0.0);  // ignored rows get zero gradient
}

TEST(CudaNn, CrossEntropyBf16) {
  SKIP_WITHOUT_CUDA();
  // The loss and dloss are f32 for bf16 logits.
  expect_cuda_bf16_matches_cpu(
      {random_tensor({12, 32000}, DType::F32, 55, -4, 4),
       labels_with_ignored(12, 32000, DType::I64), float_tensor({}, DType::F32, {1.3})},
      cross_entropy_fwd_bwd(-100), 2e-2, 1e-2, {2});
}

// ---- gradients through autograd ---------------------------------------------------------------

TEST(CudaNn, GradientsMatchReference) {
  SKIP_WITHOUT_CUDA();
  if (!cuda_has_loss_kernels()) GTEST_SKIP() << "cuda elementwise kernels are missing";
  const Shape s{6, 19};
  expect_gradients_match_reference(
      "cuda", {random_tensor(s, DType::F32, 61)},
      [](Graph& g, const std::vector<ValueId>& in) {
        return std::vector<ValueId>{ir::softmax(g, in[0], -1), ir::softmax(g, in[0], 0)};
      },
      {0}, 1e-4, 1e-5);
  expect_gradients_match_reference(
      "cuda", {random_tensor(s, DType::F32, 62), random_tensor({19}, DType::F32, 63)},
      [](Graph& g, const std::vector<ValueId>& in) {
        return std::vector<ValueId>{ir::rms_norm(g, in[0], in[1], 1e-5)};
      },
      {0, 1}, 1e-4, 1e-5);
  expect_gradients_match_reference(
      "cuda",
      {random_tensor(s, DType::F32, 64), random_tensor({19}, DType::F32, 65),
       random_tensor({19}, DType::F32, 66)},
      [](Graph& g, const std::vector<ValueId>& in) {
        return std::vector<ValueId>{ir::layer_norm(g, in[0], in[1], in[2], 1e-5)};
      },
      {0, 1, 2}, 1e-4, 1e-5);
  expect_gradients_match_reference(
      "cuda", {random_tensor({2, 5, 3, 8}, DType::F32, 67)},
      [](Graph& g, const std::vector<ValueId>& in) {
        return std::vector<ValueId>{ir::rope(g, in[0], 10000, false)};
      },
      {0}, 1e-4, 1e-5);
  expect_gradients_match_reference(
      "cuda",
      {random_tensor({9, 50}, DType::F32, 68, -3, 3), labels_with_ignored(9, 50, DType::I64)},
      [](Graph& g, const std::vector<ValueId>& in) {
        return std::vector<ValueId>{ir::cross_entropy(g, in[0], in[1], -100)};
      },
      {0}, 1e-4, 1e-6);
}

}  // namespace
}  // namespace solo::test
