// The reference backend: the plainest correct kernel for every op, in f32 and f64, with no
// threads or BLAS. Tests compare every other backend against it, and run gradient checks on
// it in f64.
#pragma once
#include "solo/backend/host_backend.h"

namespace solo {

class ReferenceBackend final : public HostBackend {
 public:
  ReferenceBackend();
  const char* name() const override { return "reference"; }
};

void register_reference_elementwise_kernels(KernelTable& t);
void register_reference_movement_kernels(KernelTable& t);
void register_reference_nn_kernels(KernelTable& t);
void register_reference_attention_kernels(KernelTable& t);
void register_reference_optim_kernels(KernelTable& t);
void register_reference_vocab_parallel_kernels(KernelTable& t);

}  // namespace solo
