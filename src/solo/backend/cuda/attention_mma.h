// Tensor-core (mma.sync) attention for bf16 with head dim 64 or 128 (attention_mma.cu). The
// entry points in attention.cu parse the call and pick this path when the backend asks for it
// (CudaContext::attention_mma) and attention_mma_supports() holds; otherwise they run the
// CUDA-core kernels.
#pragma once
#include "solo/backend/backend.h"
#include "solo/backend/cuda/attention_common.cuh"

namespace solo::cuda {

// bf16 q, k, v (and out, dout), D 64 or 128, every tensor 16-byte aligned.
bool attention_mma_supports(const KernelCall& c, const attn::Params& p);

// Attention: (q, k, v[, key_mask]) -> out, lse.
void attention_mma_forward(const KernelCall& c, const attn::Params& p);

// AttentionBackward: (q, k, v, out, lse, dout[, key_mask]) -> dq, dk, dv, given
// delta [B, Hq, T] = rowsum(dout * out) in f32.
void attention_mma_backward(const KernelCall& c, const attn::Params& p, const float* delta);

}  // namespace solo::cuda
