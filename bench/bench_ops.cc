// Op micro-benchmarks on the cpu backend: GEMM (GFLOP/s), attention forward and backward
// (GFLOP/s), RMSNorm and cross-entropy (GB/s of compulsory traffic). Each builds a one-op
// graph and runs it through the executor, as training does. GemmPrecision gives f32, widened
// bf16 and native bf16 GEMMs of one shape on one row.
//   ./build/bench/bench_ops [--benchmark_filter=Gemm]
#include <benchmark/benchmark.h>

#include <chrono>
#include <random>
#include <utility>

#include "solo/backend/backend.h"
#include "solo/backend/cpu/gemm_bf16.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"

namespace solo {
namespace {

using ir::Graph;
using ir::ValueId;

// Holds a graph with random inputs bound on the cpu backend, and runs it.
class OpRunner {
 public:
  OpRunner() : backend_(make_backend("cpu")) {}
  ValueId input(const Shape& s, DType dtype = DType::F32, int64_t int_range = 0) {
    const ValueId v = g.input({s, dtype}, "in");
    auto st = std::make_unique<Storage>(*backend_, g.type(v).bytes());
    std::mt19937 rng(static_cast<unsigned>(storages_.size() + 1));
    if (dtype == DType::F32) {
      std::uniform_real_distribution<float> d(-1.f, 1.f);
      auto* p = static_cast<float*>(st->data());
      for (int64_t i = 0; i < s.numel(); ++i) p[i] = d(rng);
    } else if (dtype == DType::BF16) {
      std::uniform_real_distribution<float> d(-1.f, 1.f);
      auto* p = static_cast<bf16*>(st->data());
      for (int64_t i = 0; i < s.numel(); ++i) p[i] = f32_to_bf16(d(rng));
    } else {
      std::uniform_int_distribution<int64_t> d(0, int_range - 1);
      auto* p = static_cast<int64_t*>(st->data());
      for (int64_t i = 0; i < s.numel(); ++i) p[i] = d(rng);
    }
    bound_[v] = st->data();
    storages_.push_back(std::move(st));
    return v;
  }
  void prepare(const std::vector<ValueId>& outputs) { plan_ = runtime::plan_memory(g, outputs); }
  void run() {
    runtime::Executor exec(*backend_);
    benchmark::DoNotOptimize(exec.run(g, plan_, bound_));
  }
  Graph g;

 private:
  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<Storage>> storages_;
  std::unordered_map<ValueId, const void*> bound_;
  runtime::MemoryPlan plan_;
};

void report(benchmark::State& state, double flops, double bytes) {
  const double n = static_cast<double>(state.iterations());
  if (flops > 0)
    state.counters["GFLOP/s"] = benchmark::Counter(flops * n / 1e9, benchmark::Counter::kIsRate);
  if (bytes > 0)
    state.counters["GB/s"] = benchmark::Counter(bytes * n / 1e9, benchmark::Counter::kIsRate);
}

// [M, K] x [N, K]^T, the shape of a linear layer's forward.
void BM_Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  OpRunner r;
  const ValueId a = r.input({m, k}), b = r.input({n, k});
  r.prepare({ir::matmul(r.g, a, b, false, true)});
  for (auto _ : state) r.run();
  report(state, 2.0 * m * n * k, 0);
}
BENCHMARK(BM_Gemm)
    ->Args({2048, 512, 512})
    ->Args({2048, 512, 1376})
    ->Args({2048, 512, 32000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The 58M Llama's GEMMs in three precisions, side by side on one row (GFLOP/s): f32
// (OpenBLAS sgemm), bf16 on f32 copies (the widened path of HostBackend::run) and bf16 on the
// AVX512_BF16 kernel (0 where the CPU lacks it); each iteration runs all three.
// Args: M, K, N, layout. Layouts: 0 a [M, K] b [N, K]^T (a linear's forward), 1 a [M, K]
// b [K, N] (its input gradient), 2 a [K, M]^T b [K, N] (its weight gradient).
void BM_GemmPrecision(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const int64_t layout = state.range(3);
  const Shape sa = layout == 2 ? Shape{k, m} : Shape{m, k};
  const Shape sb = layout == 0 ? Shape{n, k} : Shape{k, n};
  OpRunner f32, bf16;
  for (auto [r, dt] : {std::pair{&f32, DType::F32}, std::pair{&bf16, DType::BF16}}) {
    const ValueId a = r->input(sa, dt), b = r->input(sb, dt);
    r->prepare({ir::matmul(r->g, a, b, layout == 2, layout == 0)});
  }
  const bool was_native = native_bf16_gemm_enabled(), native = cpu_has_avx512_bf16();
  double seconds[3] = {0, 0, 0};
  const auto timed = [&](int which, OpRunner& r) {
    const auto start = std::chrono::steady_clock::now();
    r.run();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    seconds[which] += s;
    return s;
  };
  for (auto _ : state) {
    double s = timed(0, f32);
    set_native_bf16_gemm(false);
    s += timed(1, bf16);
    if (native) {
      set_native_bf16_gemm(true);
      s += timed(2, bf16);
    }
    state.SetIterationTime(s);
  }
  set_native_bf16_gemm(was_native);
  const double gflop = 2.0 * m * n * k * static_cast<double>(state.iterations()) / 1e9;
  const char* names[3] = {"f32", "bf16_widened", "bf16_native"};
  for (int i = 0; i < 3; ++i) state.counters[names[i]] = seconds[i] > 0 ? gflop / seconds[i] : 0;
  if (!native) state.SetLabel("no AVX512_BF16: native not run");
}
BENCHMARK(BM_GemmPrecision)
    ->ArgNames({"M", "K", "N", "layout"})
    ->Args({2048, 512, 512, 0})
    ->Args({2048, 512, 1376, 0})
    ->Args({2048, 1376, 512, 0})
    ->Args({2048, 1376, 512, 1})
    ->Args({512, 2048, 1376, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

// Causal attention, B=8, T=256, H=8, D=64 (the 58M Llama's shape).
void BM_AttentionForward(benchmark::State& state) {
  const int64_t b = 8, t = state.range(0), h = 8, d = 64;
  OpRunner r;
  const ValueId q = r.input({b, t, h, d}), k = r.input({b, t, h, d}), v = r.input({b, t, h, d});
  r.prepare({ir::attention(r.g, q, k, v, ir::kNoValue, 0.125, true)[0]});
  for (auto _ : state) r.run();
  report(state, 2.0 * 2.0 * b * h * t * t * d / 2.0, 0);  // QK^T and PV, causal half
}
BENCHMARK(BM_AttentionForward)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AttentionBackward(benchmark::State& state) {
  const int64_t b = 8, t = state.range(0), h = 8, d = 64;
  OpRunner r;
  const ValueId q = r.input({b, t, h, d}), k = r.input({b, t, h, d}), v = r.input({b, t, h, d});
  const auto fwd = ir::attention(r.g, q, k, v, ir::kNoValue, 0.125, true);
  const ValueId dout = r.input({b, t, h, d});
  r.prepare(ir::attention_backward(r.g, q, k, v, ir::kNoValue, fwd[0], fwd[1], dout, 0.125, true));
  for (auto _ : state) r.run();
  // forward recomputed once (2 GEMMs) plus 5 backward GEMMs of the same size, causal half
  report(state, 7.0 * 2.0 * b * h * t * t * d / 2.0, 0);
}
BENCHMARK(BM_AttentionBackward)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

// RMSNorm over [B*T, D]: reads x and w, writes y.
void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = 2048, d = state.range(0);
  OpRunner r;
  const ValueId x = r.input({rows, d}), w = r.input({d});
  r.prepare({ir::rms_norm(r.g, x, w, 1e-5)});
  for (auto _ : state) r.run();
  report(state, 0, 2.0 * rows * d * 4);
}
BENCHMARK(BM_RmsNorm)->Arg(512)->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Cross-entropy forward + backward over [B*T, V] logits: reads the logits twice, writes once.
void BM_CrossEntropy(benchmark::State& state) {
  const int64_t rows = 2048, vocab = state.range(0);
  OpRunner r;
  const ValueId logits = r.input({rows, vocab}), labels = r.input({rows}, DType::I64, vocab);
  const ValueId loss = ir::cross_entropy(r.g, logits, labels);
  const ValueId one = ir::full(r.g, {}, DType::F32, 1.0);
  r.prepare({loss, ir::cross_entropy_backward(r.g, logits, labels, one, -100)});
  for (auto _ : state) r.run();
  report(state, 0, 3.0 * rows * vocab * 4);
}
BENCHMARK(BM_CrossEntropy)->Arg(32000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace solo

BENCHMARK_MAIN();
