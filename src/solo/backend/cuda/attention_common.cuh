// Pieces shared by the CUDA attention kernels (attention.cu on CUDA cores, attention_mma.cu on
// tensor cores): the sizes and attrs of a call, how key_mask is stored, and row indexing.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "solo/backend/backend.h"

namespace solo::cuda::attn {

// How key_mask [B, S] is stored (any dtype; nonzero = attend).
enum MaskKind : int {
  kNoMask,
  kMaskF32,
  kMaskF64,
  kMaskBF16,
  kMaskF16,
  kMaskI32,
  kMaskI64,
  kMaskU8
};

inline int mask_kind(DType dt) {
  switch (dt) {
    case DType::F32:
      return kMaskF32;
    case DType::F64:
      return kMaskF64;
    case DType::BF16:
      return kMaskBF16;
    case DType::F16:
      return kMaskF16;
    case DType::I32:
      return kMaskI32;
    case DType::I64:
      return kMaskI64;
    case DType::Bool:
      return kMaskU8;
  }
  return kNoMask;
}

__device__ __forceinline__ bool mask_at(const void* m, int kind, int64_t i) {
  switch (kind) {
    case kMaskF32:
      return static_cast<const float*>(m)[i] != 0.f;
    case kMaskF64:
      return static_cast<const double*>(m)[i] != 0.0;
    case kMaskBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(m)[i]) != 0.f;
    case kMaskF16:
      return __half2float(static_cast<const __half*>(m)[i]) != 0.f;
    case kMaskI32:
      return static_cast<const int32_t*>(m)[i] != 0;
    case kMaskI64:
      return static_cast<const int64_t*>(m)[i] != 0;
    case kMaskU8:
      return static_cast<const uint8_t*>(m)[i] != 0;
    default:
      return true;
  }
}

struct Params {
  int B, T, S, Hq, Hkv, D, group;  // group = Hq / Hkv
  float scale;
  bool causal;
  int window;        // causal only: query t sees keys t - window < s <= t; 0 = unlimited
  const void* mask;  // [B, S] or null
  int mask_kind;
};

// True when causal masking (with the sliding window, if any) hides key s from query t.
__device__ __forceinline__ bool causal_hidden(const Params& p, int t, int s) {
  return p.causal && (s > t || (p.window > 0 && s <= t - p.window));
}

// Row i of a [B, L, H, D] tensor at (b, l, h).
__device__ __forceinline__ int64_t row_of(int b, int l, int h, int L, int H, int D) {
  return ((static_cast<int64_t>(b) * L + l) * H + h) * D;
}

// ok[j] = 1 when key k0 + j (j < n) exists and is not masked, else 0; the block shares the work.
// Threads: the block size when the kernel knows it at compile time (fewer registers), else 0.
template <int Threads = 0>
__device__ __forceinline__ void load_key_ok(float* ok, int n, int k0, int b, const Params& p) {
  const int stride = Threads > 0 ? Threads : static_cast<int>(blockDim.x);
  for (int j = threadIdx.x; j < n; j += stride) {
    const int s = k0 + j;
    ok[j] = s < p.S && mask_at(p.mask, p.mask_kind, static_cast<int64_t>(b) * p.S + s) ? 1.f : 0.f;
  }
}

// Sum / max over the 4 lanes of a quad (lanes 4i..4i+3), which share a row in both kernel
// families.
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

}  // namespace solo::cuda::attn
