// CUDA Attention and AttentionBackward against the cpu backend: causal and non-causal
// (T != S), grouped-query heads, padding masks of several dtypes with fully masked queries,
// head dims 64 and 128 (fast tiles), 40 and 200 (bounded run-time D), T = 300 (ragged tiles);
// f32 on the same inputs and bf16 against cpu f32 on the same bf16-rounded inputs; gradients
// through autograd against the reference backend; sliding windows. bf16 runs with both kernel
// families (SOLO_CUDA_ATTENTION=simt and =mma, the tensor-core kernels for D 64 and 128); tests
// that do not pick one use the environment's. Every test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

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

#define SKIP_WITHOUT_CUDA() \
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device"

constexpr double kInf = std::numeric_limits<double>::infinity();

// Selects the CUDA attention kernels ("simt" or "mma") for the backends created in its scope
// (the backend reads SOLO_CUDA_ATTENTION when constructed); restores the variable after.
class AttentionKernels {
 public:
  explicit AttentionKernels(const char* kind) {
    if (const char* v = std::getenv(kVar)) saved_ = v;
    setenv(kVar, kind, 1);
  }
  ~AttentionKernels() {
    if (saved_)
      setenv(kVar, saved_->c_str(), 1);
    else
      unsetenv(kVar);
  }
  AttentionKernels(const AttentionKernels&) = delete;
  AttentionKernels& operator=(const AttentionKernels&) = delete;

 private:
  static constexpr const char* kVar = "SOLO_CUDA_ATTENTION";
  std::optional<std::string> saved_;
};

constexpr const char* kKernelKinds[] = {"simt", "mma"};

// actual within atol_rel * max|expected| + rtol * |e| of expected, per output (infinities
// must be equal).
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

HostTensor rounded_bf16(const HostTensor& t, DType dt) {
  HostTensor r = t;
  r.type.dtype = dt;
  for (double& v : r.values) v = bf16_to_f32(f32_to_bf16(static_cast<float>(v)));
  return r;
}

// Builds attention over in = (q, k, v[, mask]); returns {out, lse}. window > 0: sliding.
Builder attention_builder(double scale, bool causal, int64_t window = 0) {
  return [=](Graph& g, const std::vector<ValueId>& in) {
    const ValueId mask = in.size() > 3 ? in[3] : kNoValue;
    return ir::attention(g, in[0], in[1], in[2], mask, scale, causal, window);
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

// Only `out`, for gradient checks.
Builder attention_out_builder(double scale, bool causal) {
  return [=](Graph& g, const std::vector<ValueId>& in) {
    const ValueId mask = in.size() > 3 ? in[3] : kNoValue;
    return std::vector<ValueId>{ir::attention(g, in[0], in[1], in[2], mask, scale, causal)[0]};
  };
}

struct Case {
  int64_t B, T, S, Hq, Hkv, D;
  bool causal;
  bool mask;
};

// A [B, S] mask with about a quarter of the keys masked and, in batch 0, keys 0..3 masked too,
// so causal queries 0..3 of batch 0 see no key (zero output, lse -inf).
HostTensor padding_mask(int64_t B, int64_t S, DType dt) {
  std::vector<int64_t> m(static_cast<size_t>(B * S));
  for (int64_t i = 0; i < B * S; ++i) m[static_cast<size_t>(i)] = (i * 7 + 3) % 4 != 0;
  for (int64_t s = 0; s < std::min<int64_t>(4, S); ++s) m[static_cast<size_t>(s)] = 0;
  return int_tensor({B, S}, dt, m);
}

// (q, k, v, dout[, mask]) in f32.
std::vector<HostTensor> inputs_of(const Case& c, uint64_t seed, DType mask_dt = DType::I32) {
  std::vector<HostTensor> in = {random_tensor({c.B, c.T, c.Hq, c.D}, DType::F32, seed),
                                random_tensor({c.B, c.S, c.Hkv, c.D}, DType::F32, seed + 1),
                                random_tensor({c.B, c.S, c.Hkv, c.D}, DType::F32, seed + 2),
                                random_tensor({c.B, c.T, c.Hq, c.D}, DType::F32, seed + 3)};
  if (c.mask) in.push_back(padding_mask(c.B, c.S, mask_dt));
  return in;
}

// The forward's inputs: without dout.
std::vector<HostTensor> forward_inputs(std::vector<HostTensor> in) {
  in.erase(in.begin() + 3);
  return in;
}

const Case kCases[] = {
    {2, 300, 300, 8, 2, 64, true, true},    // causal GQA, ragged tiles, masked queries
    {2, 70, 300, 4, 4, 128, false, true},   // non-causal, T != S, D = 128
    {1, 300, 300, 8, 2, 128, true, false},  // causal GQA, D = 128
    {2, 67, 67, 6, 3, 40, true, true},      // odd D below the 64 bound
    {1, 45, 100, 4, 1, 200, false, true},   // D = 200 (the D <= 256 tiles), one kv head
    {2, 9, 9, 2, 1, 8, false, true},        // tiny
};

std::string name(const Case& c) {
  std::ostringstream os;
  os << "B" << c.B << " T" << c.T << " S" << c.S << " Hq" << c.Hq << " Hkv" << c.Hkv << " D" << c.D
     << (c.causal ? " causal" : "") << (c.mask ? " mask" : "");
  return os.str();
}

TEST(CudaAttention, ForwardF32MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const auto in = forward_inputs(inputs_of(c, 100));
    const Builder b = attention_builder(1.0 / std::sqrt(double(c.D)), c.causal);
    expect_near_outputs(run_graph("cuda", in, b), run_graph("cpu", in, b), 1e-4, 2e-5,
                        "cuda f32 vs cpu");
  }
}

// The training shape of the 1B benchmark (seq 2048, D 128), causal, forward and backward.
TEST(CudaAttention, LongSequenceMatchesCpu) {
  if (!backend_available("cuda")) GTEST_SKIP() << "no CUDA device";
  const Case c{1, 2048, 2048, 4, 2, 128, true, false};
  const auto in = inputs_of(c, 91);
  const double scale = 1.0 / std::sqrt(double(c.D));
  const Builder fwd = attention_builder(scale, c.causal);
  expect_near_outputs(run_graph("cuda", forward_inputs(in), fwd),
                      run_graph("cpu", forward_inputs(in), fwd), 1e-4, 2e-5, name(c));
  const Builder bwd = backward_builder(scale, c.causal);
  expect_near_outputs(run_graph("cuda", in, bwd), run_graph("cpu", in, bwd), 2e-4, 2e-5, name(c));
}

TEST(CudaAttention, FullyMaskedQueriesGiveZerosAndMinusInf) {
  SKIP_WITHOUT_CUDA();
  const Case c{2, 70, 70, 2, 1, 64, true, true};
  const auto out =
      run_graph("cuda", forward_inputs(inputs_of(c, 200)), attention_builder(0.125, true));
  // Batch 0, queries 0..3, every head: zero rows and lse = -inf.
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t h = 0; h < c.Hq; ++h) {
      EXPECT_EQ(out[1].values[static_cast<size_t>(h * c.T + t)], -kInf);
      for (int64_t d = 0; d < c.D; ++d)
        EXPECT_EQ(out[0].values[static_cast<size_t>((t * c.Hq + h) * c.D + d)], 0.0);
    }
}

TEST(CudaAttention, MaskDtypes) {
  SKIP_WITHOUT_CUDA();
  const Case c{2, 67, 67, 4, 2, 64, true, true};
  for (DType mdt : {DType::Bool, DType::I32, DType::I64, DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(mdt));
    const auto in = forward_inputs(inputs_of(c, 300, mdt));
    const Builder b = attention_builder(0.2, c.causal);
    expect_near_outputs(run_graph("cuda", in, b), run_graph("cpu", in, b), 1e-4, 2e-5,
                        "cuda f32 vs cpu");
  }
}

// bf16 forward of case c on the current kernels against cpu f32 on the same rounded inputs.
void check_forward_bf16(const Case& c, uint64_t seed) {
  SCOPED_TRACE(name(c));
  const auto in = forward_inputs(inputs_of(c, seed));
  std::vector<HostTensor> in16 = in, in32 = in;
  for (int i = 0; i < 3; ++i) {
    in16[static_cast<size_t>(i)] = rounded_bf16(in[static_cast<size_t>(i)], DType::BF16);
    in32[static_cast<size_t>(i)] = rounded_bf16(in[static_cast<size_t>(i)], DType::F32);
  }
  const Builder b = attention_builder(1.0 / std::sqrt(double(c.D)), c.causal);
  expect_near_outputs(run_graph("cuda", in16, b), run_graph("cpu", in32, b), 2e-2, 1e-2,
                      "cuda bf16 vs cpu f32");
}

// The same for the backward (dq, dk, dv).
void check_backward_bf16(const Case& c, uint64_t seed) {
  SCOPED_TRACE(name(c));
  const auto in = inputs_of(c, seed);
  std::vector<HostTensor> in16 = in, in32 = in;
  for (int i = 0; i < 4; ++i) {
    in16[static_cast<size_t>(i)] = rounded_bf16(in[static_cast<size_t>(i)], DType::BF16);
    in32[static_cast<size_t>(i)] = rounded_bf16(in[static_cast<size_t>(i)], DType::F32);
  }
  // The bf16 forward output feeds Delta = rowsum(dout * out), so errors are a few bf16 ulps.
  const Builder b = backward_builder(1.0 / std::sqrt(double(c.D)), c.causal);
  expect_near_outputs(run_graph("cuda", in16, b), run_graph("cpu", in32, b), 3e-2, 2e-2,
                      "cuda bf16 vs cpu f32");
}

TEST(CudaAttention, ForwardBf16MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (const char* kind : kKernelKinds) {
    SCOPED_TRACE(kind);
    AttentionKernels kernels(kind);
    for (const Case& c : kCases) check_forward_bf16(c, 400);
  }
}

TEST(CudaAttention, BackwardF32MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const auto in = inputs_of(c, 500);
    const Builder b = backward_builder(1.0 / std::sqrt(double(c.D)), c.causal);
    expect_near_outputs(run_graph("cuda", in, b), run_graph("cpu", in, b), 2e-4, 2e-5,
                        "cuda f32 vs cpu");
  }
}

TEST(CudaAttention, BackwardBf16MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (const char* kind : kKernelKinds) {
    SCOPED_TRACE(kind);
    AttentionKernels kernels(kind);
    for (const Case& c : kCases) check_backward_bf16(c, 600);
  }
}

// Sliding windows (1, inside a tile, across tiles, T - 1, beyond T) on the tile shapes of each
// head dim, f32 forward and backward against cpu, and bf16 with both kernel selections (the
// tensor-core family hands windowed calls to the CUDA-core kernels).
TEST(CudaAttention, SlidingWindowMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Case cases[] = {{2, 300, 300, 8, 2, 64, true, true},
                        {1, 200, 200, 4, 2, 128, true, false},
                        {1, 100, 100, 4, 1, 200, true, true}};
  for (const Case& c : cases)
    for (int64_t w : {int64_t{1}, int64_t{17}, int64_t{64}, int64_t{100}, c.T - 1, c.T + 5}) {
      SCOPED_TRACE(name(c) + " window " + std::to_string(w));
      const auto in = inputs_of(c, 1000);
      const double scale = 1.0 / std::sqrt(double(c.D));
      const Builder fwd = attention_builder(scale, true, w);
      expect_near_outputs(run_graph("cuda", forward_inputs(in), fwd),
                          run_graph("cpu", forward_inputs(in), fwd), 1e-4, 2e-5, "forward");
      const Builder bwd = backward_builder(scale, true, w);
      expect_near_outputs(run_graph("cuda", in, bwd), run_graph("cpu", in, bwd), 2e-4, 2e-5,
                          "backward");
      for (const char* kind : kKernelKinds) {
        SCOPED_TRACE(kind);
        AttentionKernels kernels(kind);
        std::vector<HostTensor> in16 = in, in32 = in;
        for (size_t i = 0; i < 4; ++i) {
          in16[i] = rounded_bf16(in[i], DType::BF16);
          in32[i] = rounded_bf16(in[i], DType::F32);
        }
        expect_near_outputs(run_graph("cuda", forward_inputs(in16), fwd),
                            run_graph("cpu", forward_inputs(in32), fwd), 2e-2, 1e-2,
                            "bf16 forward");
        expect_near_outputs(run_graph("cuda", in16, bwd), run_graph("cpu", in32, bwd), 3e-2, 2e-2,
                            "bf16 backward");
      }
    }
}

// Shapes aimed at the tensor-core kernels (bf16, D 64 and 128): ragged query and key tiles
// (100, 300), causal and not, T != S, grouped heads, padding masks with fully masked queries
// (causal cases), exact tiles, and the long causal sequence.
const Case kMmaCases[] = {
    {2, 100, 100, 4, 2, 64, true, true},      // causal GQA, masked queries, one ragged tile
    {2, 300, 300, 4, 2, 128, false, true},    // non-causal, mask, ragged
    {1, 300, 300, 4, 2, 128, true, true},     // causal, mask, ragged, D = 128
    {1, 100, 300, 4, 4, 64, false, false},    // T != S
    {1, 300, 100, 4, 1, 128, false, true},    // S < T, one kv head for four query heads
    {2, 128, 128, 2, 2, 64, true, false},     // exact tiles
    {1, 1024, 1024, 4, 2, 128, true, false},  // long causal
    {1, 1024, 1024, 4, 2, 64, false, true},   // long, masked
};

TEST(CudaAttention, MmaForwardBf16MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  AttentionKernels kernels("mma");
  for (const Case& c : kMmaCases) check_forward_bf16(c, 800);
}

TEST(CudaAttention, MmaBackwardBf16MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  AttentionKernels kernels("mma");
  for (const Case& c : kMmaCases) check_backward_bf16(c, 900);
}

// Fully masked queries: zero output and lse -inf from the tensor-core kernels too, and zero
// gradients for them (their rows of dq) and for masked keys (dk, dv).
TEST(CudaAttention, MmaFullyMaskedQueries) {
  SKIP_WITHOUT_CUDA();
  AttentionKernels kernels("mma");
  for (const int64_t D : {64, 128}) {
    const Case c{2, 70, 70, 4, 2, D, true, true};
    SCOPED_TRACE(name(c));
    auto in = inputs_of(c, 1000);
    for (int i = 0; i < 4; ++i)
      in[static_cast<size_t>(i)] = rounded_bf16(in[static_cast<size_t>(i)], DType::BF16);
    const auto out = run_graph("cuda", forward_inputs(in), attention_builder(0.125, true));
    const auto grads = run_graph("cuda", in, backward_builder(0.125, true));
    for (int64_t t = 0; t < 4; ++t)
      for (int64_t h = 0; h < c.Hq; ++h) {
        EXPECT_EQ(out[1].values[static_cast<size_t>(h * c.T + t)], -kInf);
        for (int64_t d = 0; d < c.D; ++d) {
          const auto i = static_cast<size_t>((t * c.Hq + h) * c.D + d);
          EXPECT_EQ(out[0].values[i], 0.0);
          EXPECT_EQ(grads[0].values[i], 0.0);  // dq
        }
      }
    for (int64_t s = 0; s < 4; ++s)  // batch 0, keys 0..3 are masked
      for (int64_t h = 0; h < c.Hkv; ++h)
        for (int64_t d = 0; d < c.D; ++d) {
          const auto i = static_cast<size_t>((s * c.Hkv + h) * c.D + d);
          EXPECT_EQ(grads[1].values[i], 0.0);  // dk
          EXPECT_EQ(grads[2].values[i], 0.0);  // dv
        }
  }
}

// A value other than mma / simt is an error naming the accepted ones (before any device use,
// so this runs without a GPU too).
TEST(CudaAttention, UnknownKernelSelectionIsAnError) {
  AttentionKernels kernels("fast");
  try {
    make_backend("cuda");
    ADD_FAILURE() << "the cuda backend accepted SOLO_CUDA_ATTENTION=fast";
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.find("not built in") != std::string::npos) GTEST_SKIP() << "no CUDA backend";
    EXPECT_NE(msg.find("SOLO_CUDA_ATTENTION"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mma"), std::string::npos) << msg;
    EXPECT_NE(msg.find("simt"), std::string::npos) << msg;
  }
}

TEST(CudaAttention, GradientsMatchReference) {
  SKIP_WITHOUT_CUDA();
  const auto cuda = make_backend("cuda");
  for (OpKind op : {OpKind::Full, OpKind::Add, OpKind::Mul, OpKind::Sum, OpKind::BroadcastTo})
    if (!cuda->has_kernel(op)) GTEST_SKIP() << "cuda has no " << op_name(op) << " kernel yet";
  for (const Case& c :
       {Case{2, 41, 41, 4, 2, 16, true, true}, Case{1, 20, 33, 4, 1, 40, false, true},
        Case{1, 70, 70, 2, 2, 64, true, false}}) {
    SCOPED_TRACE(name(c));
    const auto in = forward_inputs(inputs_of(c, 700, DType::Bool));
    expect_gradients_match_reference("cuda", in, attention_out_builder(0.25, c.causal), {0, 1, 2},
                                     2e-4, 2e-5);
  }
}

}  // namespace
}  // namespace solo::test
