// Every computing op has a kernel on every backend that computes: reference, cpu and (when
// built) cuda. The cuda kernel table is filled by the same registration functions the
// backend's constructor calls, without touching a device, so a missing CUDA kernel fails
// here on machines without a GPU instead of on the first GPU run.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "solo/backend/backend.h"
#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/reference/reference_backend.h"
#include "solo/core/op_info.h"
#ifdef SOLO_HAVE_CUDA
#include "solo/backend/cuda/cuda_backend.h"
#endif

namespace solo {
namespace {

// Ops the executor carries out itself: graph inputs are bound to their storage, views alias
// their operand, collectives and send/recv go through a communicator.
bool run_by_executor(OpKind op) {
  return !op_info(op).kernel();
}

std::vector<std::string> missing_kernels(const KernelTable& t) {
  std::vector<std::string> missing;
  for (int i = 0; i < kNumOps; ++i) {
    const auto op = static_cast<OpKind>(i);
    if (!run_by_executor(op) && t.get(op) == nullptr) missing.emplace_back(op_name(op));
  }
  return missing;
}

KernelTable reference_table() {
  KernelTable t;
  register_reference_elementwise_kernels(t);
  register_reference_movement_kernels(t);
  register_reference_nn_kernels(t);
  register_reference_attention_kernels(t);
  register_reference_optim_kernels(t);
  register_reference_vocab_parallel_kernels(t);
  return t;
}

KernelTable cpu_table() {
  KernelTable t;
  register_cpu_elementwise_kernels(t);
  register_cpu_movement_kernels(t);
  register_cpu_nn_kernels(t);
  register_cpu_attention_kernels(t);
  register_cpu_optim_kernels(t);
  register_cpu_vocab_parallel_kernels(t);
  return t;
}

TEST(BackendCoverage, ReferenceHasEveryComputingOp) {
  EXPECT_EQ(missing_kernels(reference_table()), std::vector<std::string>{});
}

TEST(BackendCoverage, CpuHasEveryComputingOp) {
  EXPECT_EQ(missing_kernels(cpu_table()), std::vector<std::string>{});
}

// The constructed backends carry the registered tables (the constructor registers them all).
TEST(BackendCoverage, ConstructedHostBackendsMatchTheirTables) {
  const KernelTable ref = reference_table(), cpu = cpu_table();
  const auto reference_backend = make_backend("reference");
  const auto cpu_backend = make_backend("cpu");
  for (int i = 0; i < kNumOps; ++i) {
    const auto op = static_cast<OpKind>(i);
    EXPECT_EQ(reference_backend->has_kernel(op), ref.get(op) != nullptr) << op_name(op);
    EXPECT_EQ(cpu_backend->has_kernel(op), cpu.get(op) != nullptr) << op_name(op);
  }
}

// The check itself can fail: a table without the nn group misses its ops by name.
TEST(BackendCoverage, AMissingGroupIsReportedByName) {
  KernelTable t;
  register_reference_elementwise_kernels(t);
  register_reference_movement_kernels(t);
  register_reference_attention_kernels(t);
  register_reference_optim_kernels(t);
  register_reference_vocab_parallel_kernels(t);
  const auto missing = missing_kernels(t);
  EXPECT_NE(std::find(missing.begin(), missing.end(), "RmsNorm"), missing.end());
  EXPECT_EQ(std::find(missing.begin(), missing.end(), "Add"), missing.end());
}

#ifdef SOLO_HAVE_CUDA
TEST(BackendCoverage, CudaHasEveryComputingOp) {
  KernelTable t;
  register_cuda_elementwise_kernels(t);
  register_cuda_movement_kernels(t);
  register_cuda_nn_kernels(t);
  register_cuda_attention_kernels(t);
  register_cuda_optim_kernels(t);
  register_cuda_vocab_parallel_kernels(t);
  EXPECT_EQ(missing_kernels(t), std::vector<std::string>{});
}
#endif

}  // namespace
}  // namespace solo
