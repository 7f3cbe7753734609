// The CPU backend: OpenBLAS GEMMs, OpenMP loops and fused kernels for the hot ops.
#pragma once
#include "solo/backend/host_backend.h"

namespace solo {

class CpuBackend final : public HostBackend {
 public:
  CpuBackend();
  const char* name() const override { return "cpu"; }

 protected:
  void widen(const TensorRef& half, float* out) const override;
  void narrow(const float* in, const TensorRef& half) const override;
};

// The widened path's conversions (half_convert.cc): core/half.h rounding, parallel over
// large tensors.
void widen_half(const TensorRef& half, float* out);
void narrow_to_half(const float* in, const TensorRef& half);

// Kernel groups, one file each (see ir/ops.h for the groups).
void register_cpu_elementwise_kernels(KernelTable& t);
void register_cpu_movement_kernels(KernelTable& t);
void register_cpu_nn_kernels(KernelTable& t);
void register_cpu_attention_kernels(KernelTable& t);
void register_cpu_optim_kernels(KernelTable& t);
void register_cpu_vocab_parallel_kernels(KernelTable& t);

// MatMul on bf16 operands through gemm_bf16 (movement.cc); false where that does not apply.
bool matmul_half(const KernelCall& c);

}  // namespace solo
