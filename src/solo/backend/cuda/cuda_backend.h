// The CUDA backend: device memory from a caching allocator (the executor's arena has the same
// size every step, so it is served from the cache after the first), kernels on one stream,
// GEMMs through cuBLASLt, recordings as CUDA graphs. Built only when CMake finds the CUDA toolkit
// (SOLO_HAVE_CUDA).
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <memory>

#include "solo/backend/backend.h"

namespace solo {

// What kernels receive in KernelCall::context. Opaque handles keep CUDA headers out of
// this header.
struct CudaContext {
  void* stream = nullptr;     // cudaStream_t
  void* cublaslt = nullptr;   // cublasLtHandle_t
  void* workspace = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes = 0;
  int sm_count = 0;
  // Attention on tensor cores (attention_mma.cu) for bf16 with head dim 64 or 128; false: the
  // CUDA-core kernels. From SOLO_CUDA_ATTENTION ("mma" or "simt"; unset = "simt").
  bool attention_mma = false;
};

class CudaBackend final : public Backend {
 public:
  // Runs on CUDA device `device` of those visible. A Session rank sees only its own GPU
  // (CUDA_VISIBLE_DEVICES from its local rank), so 0 is right there. Throws solo::Error when
  // that device is not usable or SOLO_CUDA_ATTENTION is not one of "mma", "simt".
  explicit CudaBackend(int device = 0);
  ~CudaBackend() override;
  const char* name() const override { return "cuda"; }
  bool host_memory() const override { return false; }
  void run(const KernelCall& call) const override;
  void copy_from_host(void* dst, const void* src, size_t bytes) const override;
  void copy_to_host(void* dst, const void* src, size_t bytes) const override;
  void copy(void* dst, const void* src, size_t bytes) const override;
  void synchronize() const override;
  // Recording is stream capture into a CUDA graph; a replay is one graph launch.
  bool can_record() const override { return true; }
  void begin_recording() override;
  std::unique_ptr<Recording> end_recording() override;
  int device_index() const override { return device_; }
  std::string device_model() const override;
  void* stream() const override { return ctx_.stream; }
  void set_wait_check(std::function<void()> check) override { wait_check_ = std::move(check); }
  const CudaContext& context() const { return ctx_; }

 protected:
  void* raw_allocate(size_t bytes) override;
  void raw_deallocate(void* p, size_t bytes) override;

 private:
  int device_;
  CudaContext ctx_;
  std::multimap<size_t, void*> free_blocks_;  // cached device blocks by rounded size
  bool recording_ = false;
  std::function<void()> wait_check_;
  // Waits for the stream's work: cudaStreamSynchronize, or polling with wait_check_.
  void wait_for_stream() const;
};

// True when the CUDA runtime sees at least one device (used by tests to skip).
bool cuda_device_available();

// Kernel groups, one file each (see ir/ops.h for the groups).
void register_cuda_elementwise_kernels(KernelTable& t);
void register_cuda_movement_kernels(KernelTable& t);
void register_cuda_nn_kernels(KernelTable& t);
void register_cuda_attention_kernels(KernelTable& t);
void register_cuda_optim_kernels(KernelTable& t);
void register_cuda_vocab_parallel_kernels(KernelTable& t);

}  // namespace solo
