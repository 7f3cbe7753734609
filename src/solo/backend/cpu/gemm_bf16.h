// A bf16 GEMM for CPUs with AVX512_BF16: bf16 operands, f32 accumulation (vdpbf16ps), one
// rounding of each f32 result to bf16 (round to nearest even, as core/half.h), or an f32
// result. MatMul on two bf16 operands runs here instead of on widened f32 copies.
#pragma once
#include <cstdint>

#include "solo/core/dtype.h"
#include "solo/core/error.h"
#include "solo/core/half.h"

namespace solo {

// True when this CPU has avx512f, avx512bw, avx512vl and avx512bf16.
bool cpu_has_avx512_bf16();

// Whether bf16 MatMul takes the native kernel: the CPU has the instructions and it is not
// switched off (SOLO_CPU_BF16_GEMM=0 in the environment, or set_native_bf16_gemm(false),
// which benchmarks use to time the widened path). Turning it on needs the instructions.
bool native_bf16_gemm_enabled();
void set_native_bf16_gemm(bool on);

// GEMMs the native kernel has run in this process (tests check that the dispatch takes it).
uint64_t native_bf16_gemm_count();

// One operand: element (r, c) of its logical matrix is data[r * ld + c], or data[c * ld + r]
// when trans. Batch p starts at data + p * batch_stride (0: shared by all batches).
struct Bf16Matrix {
  const bf16* data = nullptr;
  int64_t ld = 0;
  bool trans = false;
  int64_t batch_stride = 0;
};

// y[p] = a[p] b[p] for p < batch, with a [M, K] and b [K, N] logical, y [batch, M, N]
// row-major in y_dtype (BF16 or F32). Runs on all OpenMP threads. Requires
// cpu_has_avx512_bf16(). Denormal bf16 inputs count as zero (vdpbf16ps).
void gemm_bf16(int64_t batch, int64_t m, int64_t n, int64_t k, const Bf16Matrix& a,
               const Bf16Matrix& b, void* y, DType y_dtype);

}  // namespace solo
