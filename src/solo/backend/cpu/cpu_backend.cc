#include "solo/backend/cpu/cpu_backend.h"

namespace solo {

CpuBackend::CpuBackend() {
  register_cpu_elementwise_kernels(kernels_);
  register_cpu_movement_kernels(kernels_);
  register_cpu_nn_kernels(kernels_);
  register_cpu_attention_kernels(kernels_);
  register_cpu_optim_kernels(kernels_);
  register_cpu_vocab_parallel_kernels(kernels_);
  set_half_kernel(OpKind::MatMul, matmul_half);
}

void CpuBackend::widen(const TensorRef& half, float* out) const {
  widen_half(half, out);
}
void CpuBackend::narrow(const float* in, const TensorRef& half) const {
  narrow_to_half(in, half);
}

}  // namespace solo
