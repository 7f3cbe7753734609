#include "solo/backend/reference/reference_backend.h"

namespace solo {

ReferenceBackend::ReferenceBackend() {
  register_reference_elementwise_kernels(kernels_);
  register_reference_movement_kernels(kernels_);
  register_reference_nn_kernels(kernels_);
  register_reference_attention_kernels(kernels_);
  register_reference_optim_kernels(kernels_);
  register_reference_vocab_parallel_kernels(kernels_);
}

}  // namespace solo
