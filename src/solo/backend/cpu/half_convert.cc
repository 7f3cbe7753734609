// bf16/f16 <-> f32 conversion of whole tensors for the widened path of HostBackend::run:
// core/half.h's conversions (written so these loops vectorise), over all threads.
#include "solo/backend/cpu/cpu_backend.h"
#include "solo/core/half.h"

namespace solo {
namespace {

// Below this many elements a parallel region costs more than the conversion.
constexpr int64_t kParallelGrain = 1 << 15;

}  // namespace

void widen_half(const TensorRef& half, float* out) {
  const int64_t n = half.numel();
  if (half.dtype == DType::BF16) {
    const bf16* in = half.as<const bf16>();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(in[i]);
    return;
  }
  const f16* in = half.as<const f16>();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(in[i]);
}

void narrow_to_half(const float* in, const TensorRef& half) {
  const int64_t n = half.numel();
  if (half.dtype == DType::BF16) {
    bf16* out = half.as<bf16>();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(in[i]);
    return;
  }
  f16* out = half.as<f16>();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(in[i]);
}

}  // namespace solo
