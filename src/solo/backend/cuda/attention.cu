#include "solo/backend/cuda/cuda_util.cuh"

namespace solo {

void register_cuda_attention_kernels(KernelTable& t) { (void)t; }

}  // namespace solo
