// Helpers for CUDA kernel files: error checks, the stream of a call, launch sizes, and
// bf16/f32 loads and stores so one template serves both dtypes.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "solo/backend/backend.h"
#include "solo/backend/cuda/cuda_backend.h"

#define SOLO_CUDA_CHECK(expr)                                                               \
  do {                                                                                      \
    cudaError_t err_ = (expr);                                                              \
    if (err_ != cudaSuccess)                                                                \
      SOLO_FAIL("CUDA error at ", __FILE__, ":", __LINE__, ": ", cudaGetErrorString(err_)); \
  } while (0)

namespace solo::cuda {

inline cudaStream_t stream_of(const KernelCall& c) {
  return static_cast<cudaStream_t>(static_cast<CudaContext*>(c.context)->stream);
}
inline const CudaContext& context_of(const KernelCall& c) {
  return *static_cast<CudaContext*>(c.context);
}

inline unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 * 32 ? b : 65535 * 32);
}

// Checks the launch that was just made (bad configuration, missing kernel image).
inline void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) SOLO_FAIL(what, ": CUDA launch failed: ", cudaGetErrorString(err));
}

template <class T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <class T>
__device__ __forceinline__ T from_float(float v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float v) {
  return __float2bfloat16(v);
}

// Calls f(T{}) with T = float or __nv_bfloat16 by dtype (the GPU compute dtypes).
template <class F>
void dispatch_f32_bf16(OpKind op, DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::BF16:
      f(__nv_bfloat16{});
      return;
    default:
      SOLO_FAIL(op_name(op), ": dtype ", dtype_name(dt),
                " is not supported on cuda; use f32 or bf16");
  }
}

}  // namespace solo::cuda
