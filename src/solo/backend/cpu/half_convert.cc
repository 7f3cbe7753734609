// bf16/f16 <-> f32 conversion of whole tensors for the widened path of HostBackend::run:
// the rounding of core/half.h, written so the bf16 loops vectorise, over all threads.
#include <cstring>

#include "solo/backend/cpu/cpu_backend.h"
#include "solo/core/half.h"

namespace solo {
namespace {

// Below this many elements a parallel region costs more than the conversion.
constexpr int64_t kParallelGrain = 1 << 15;

// f32_to_bf16 without the early return, so that the loop becomes vector selects.
inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

}  // namespace

void widen_half(const TensorRef& half, float* out) {
  const int64_t n = half.numel();
  if (half.dtype == DType::BF16) {
    const uint16_t* in = half.as<const uint16_t>();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = static_cast<uint32_t>(in[i]) << 16;
      std::memcpy(out + i, &u, 4);
    }
    return;
  }
  const f16* in = half.as<const f16>();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(in[i]);
}

void narrow_to_half(const float* in, const TensorRef& half) {
  const int64_t n = half.numel();
  if (half.dtype == DType::BF16) {
    uint16_t* out = half.as<uint16_t>();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits(in[i]);
    return;
  }
  f16* out = half.as<f16>();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(in[i]);
}

}  // namespace solo
