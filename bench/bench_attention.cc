// Attention forward and backward alone on the cuda backend, bf16, for each kernel family
// (SOLO_CUDA_ATTENTION=simt and =mma): milliseconds and TFLOP/s per call, and how far the
// mma results are from the simt ones. Default shape is the 1B Llama benchmark's attention.
//   ./build/bench/bench_attention [--batch 4] [--seq 2048] [--heads 16] [--kv-heads 16]
//                                 [--dim 128] [--causal 1] [--iters 20]
// FLOPs count the four matmuls of the forward (2 each for S and O) and 2.5x that for the
// backward, halved when causal, as FlashAttention papers do.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "solo/backend/backend.h"
#include "solo/core/half.h"

using namespace solo;

namespace {

struct Shapes {
  int64_t B, T, H, Hkv, D;
};

// A device tensor owned by the backend.
struct Buffer {
  Buffer(Backend& be, Shape shape, DType dt)
      : storage(be, static_cast<size_t>(shape.numel()) * dtype_size(dt)),
        ref{storage.data(), std::move(shape), dt} {}
  Storage storage;
  TensorRef ref;
};

void fill_bf16(const Backend& be, const Buffer& b, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<bf16> h(static_cast<size_t>(b.ref.numel()));
  for (auto& x : h) x = f32_to_bf16(d(rng));
  be.copy_from_host(b.ref.data, h.data(), h.size() * sizeof(bf16));
}

std::vector<float> to_host(const Backend& be, const Buffer& b) {
  std::vector<float> out(static_cast<size_t>(b.ref.numel()));
  if (b.ref.dtype == DType::F32) {
    be.copy_to_host(out.data(), b.ref.data, out.size() * sizeof(float));
    return out;
  }
  std::vector<bf16> h(out.size());
  be.copy_to_host(h.data(), b.ref.data, h.size() * sizeof(bf16));
  for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_f32(h[i]);
  return out;
}

// Seconds per call of `call` (after one warm-up), averaged over iters.
double time_call(const Backend& be, const KernelCall& call, int iters) {
  be.run(call);
  be.synchronize();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) be.run(call);
  be.synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
}

// max |a - b| / max |b| over finite values (b the reference).
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(b[i])) {
      if (a[i] != b[i]) num = INFINITY;
      continue;
    }
    num = std::max(num, std::abs(double(a[i]) - b[i]));
    den = std::max(den, std::abs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Attention kernels on the cuda backend (bf16)"};
  Shapes s{4, 2048, 16, 16, 128};
  bool causal = true;
  int iters = 20;
  app.add_option("--batch", s.B);
  app.add_option("--seq", s.T);
  app.add_option("--heads", s.H);
  app.add_option("--kv-heads", s.Hkv);
  app.add_option("--dim", s.D);
  app.add_option("--causal", causal);
  app.add_option("--iters", iters);
  CLI11_PARSE(app, argc, argv);

  const double fwd_flops =
      4.0 * s.B * s.H * static_cast<double>(s.T) * s.T * s.D * (causal ? 0.5 : 1.0);
  const Attrs attrs = Attrs().set("scale", 1.0 / std::sqrt(double(s.D))).set("causal", causal);
  std::printf("attention B %lld T %lld H %lld Hkv %lld D %lld%s, bf16\n",
              static_cast<long long>(s.B), static_cast<long long>(s.T), static_cast<long long>(s.H),
              static_cast<long long>(s.Hkv), static_cast<long long>(s.D), causal ? " causal" : "");
  std::vector<std::vector<float>> reference;  // simt out, lse, dq, dk, dv
  for (const char* kind : {"simt", "mma"}) {
    setenv("SOLO_CUDA_ATTENTION", kind, 1);
    std::unique_ptr<Backend> be;
    try {
      be = make_backend("cuda");
    } catch (const Error& e) {
      std::printf("cuda backend unavailable: %s\n", e.what());
      return 0;
    }
    const Shape qs{s.B, s.T, s.H, s.D}, ks{s.B, s.T, s.Hkv, s.D};
    Buffer q(*be, qs, DType::BF16), k(*be, ks, DType::BF16), v(*be, ks, DType::BF16),
        dout(*be, qs, DType::BF16), out(*be, qs, DType::BF16),
        lse(*be, Shape{s.B, s.H, s.T}, DType::F32), dq(*be, qs, DType::BF16),
        dk(*be, ks, DType::BF16), dv(*be, ks, DType::BF16);
    fill_bf16(*be, q, 1);
    fill_bf16(*be, k, 2);
    fill_bf16(*be, v, 3);
    fill_bf16(*be, dout, 4);
    const TensorRef fwd_in[] = {q.ref, k.ref, v.ref}, fwd_out[] = {out.ref, lse.ref};
    const TensorRef bwd_in[] = {q.ref, k.ref, v.ref, out.ref, lse.ref, dout.ref};
    const TensorRef bwd_out[] = {dq.ref, dk.ref, dv.ref};
    const KernelCall fwd{OpKind::Attention, attrs, fwd_in, fwd_out};
    const KernelCall bwd{OpKind::AttentionBackward, attrs, bwd_in, bwd_out};
    const double tf = time_call(*be, fwd, iters);  // also leaves out and lse for the backward
    const double tb = time_call(*be, bwd, iters);
    std::printf("%-4s forward %8.3f ms %7.1f TFLOP/s   backward %8.3f ms %7.1f TFLOP/s\n", kind,
                tf * 1e3, fwd_flops / tf / 1e12, tb * 1e3, 2.5 * fwd_flops / tb / 1e12);
    std::vector<std::vector<float>> res;
    for (const Buffer* b : {&out, &lse, &dq, &dk, &dv}) res.push_back(to_host(*be, *b));
    if (reference.empty()) {
      reference = std::move(res);
      continue;
    }
    const char* names[] = {"out", "lse", "dq", "dk", "dv"};
    std::printf("mma vs simt, max |diff| / max |simt|:");
    for (size_t i = 0; i < res.size(); ++i)
      std::printf(" %s %.2e", names[i], rel_diff(res[i], reference[i]));
    std::printf("\n");
  }
  return 0;
}
