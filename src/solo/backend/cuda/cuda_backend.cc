#include "solo/backend/cuda/cuda_backend.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "solo/core/error.h"

#define SOLO_CUDA_CHECK(expr)                                                               \
  do {                                                                                      \
    cudaError_t err_ = (expr);                                                              \
    if (err_ != cudaSuccess)                                                                \
      SOLO_FAIL("CUDA error at ", __FILE__, ":", __LINE__, ": ", cudaGetErrorString(err_)); \
  } while (0)

namespace solo {

namespace {

// A captured stream: launching it queues every recorded kernel and copy at once.
class CudaGraph final : public Recording {
 public:
  CudaGraph(cudaGraph_t graph, cudaGraphExec_t exec, cudaStream_t stream)
      : graph_(graph), exec_(exec), stream_(stream) {}
  ~CudaGraph() override {
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }
  void replay() override { SOLO_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

constexpr size_t kGranule = 2 << 20;  // blocks are cached in 2 MiB steps
size_t rounded(size_t bytes) {
  return (bytes + kGranule - 1) / kGranule * kGranule;
}

// SOLO_CUDA_ATTENTION: "mma" = tensor-core attention kernels, "simt" (or unset) = the
// CUDA-core ones, which stay the default until the tensor-core kernels are verified on GPUs.
bool attention_mma_from_env() {
  const char* v = std::getenv("SOLO_CUDA_ATTENTION");
  if (v == nullptr || *v == '\0') return false;
  const std::string s = v;
  SOLO_CHECK(s == "mma" || s == "simt", "SOLO_CUDA_ATTENTION='", s,
             "' is not supported: use 'mma' (tensor cores) or 'simt' (CUDA cores, the default)");
  return s == "mma";
}
}  // namespace

bool cuda_device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::string CudaBackend::device_model() const {
  cudaDeviceProp prop{};
  SOLO_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  return prop.name;
}

CudaBackend::CudaBackend(int device) : device_(device) {
  ctx_.attention_mma = attention_mma_from_env();  // a bad value fails before touching the device
  SOLO_CHECK(cuda_device_available(), "no CUDA device is available; use the cpu backend or a ",
             "flavor without GPUs");
  int count = 0;
  SOLO_CUDA_CHECK(cudaGetDeviceCount(&count));
  SOLO_CHECK(device >= 0 && device < count, "CUDA device ", device, " does not exist: ", count,
             " are visible; use an index in [0, ", count, ") or check CUDA_VISIBLE_DEVICES");
  SOLO_CUDA_CHECK(cudaSetDevice(device));
  cudaStream_t stream;
  SOLO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ctx_.stream = stream;
  cublasLtHandle_t lt;
  SOLO_CHECK(cublasLtCreate(&lt) == CUBLAS_STATUS_SUCCESS, "cuBLASLt could not be initialised");
  ctx_.cublaslt = lt;
  ctx_.workspace_bytes = 32u << 20;
  SOLO_CUDA_CHECK(cudaMalloc(&ctx_.workspace, ctx_.workspace_bytes));
  // Kernels take scratch with cudaMallocAsync; keep freed pool memory instead of returning it
  // to the driver at every synchronisation (re-mapping it each step costs milliseconds).
  cudaMemPool_t pool;
  SOLO_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep = UINT64_MAX;
  SOLO_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  ctx_.sm_count = sms;
  register_cuda_elementwise_kernels(kernels_);
  register_cuda_movement_kernels(kernels_);
  register_cuda_nn_kernels(kernels_);
  register_cuda_attention_kernels(kernels_);
  register_cuda_optim_kernels(kernels_);
  register_cuda_vocab_parallel_kernels(kernels_);
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(static_cast<cudaStream_t>(ctx_.stream));
  for (auto& [size, p] : free_blocks_) cudaFree(p);
  cudaFree(ctx_.workspace);
  cublasLtDestroy(static_cast<cublasLtHandle_t>(ctx_.cublaslt));
  cudaStreamDestroy(static_cast<cudaStream_t>(ctx_.stream));
}

void CudaBackend::run(const KernelCall& call) const {
  KernelCall with_context = call;
  with_context.context = const_cast<CudaContext*>(&ctx_);
  Backend::run(with_context);
}

void CudaBackend::begin_recording() {
  SOLO_CHECK(!recording_, "cuda: a recording is already under way");
  // Thread-local: calls that cannot be captured fail only on this thread, which then runs
  // the work eagerly instead.
  SOLO_CUDA_CHECK(cudaStreamBeginCapture(static_cast<cudaStream_t>(ctx_.stream),
                                         cudaStreamCaptureModeThreadLocal));
  recording_ = true;
}

std::unique_ptr<Recording> CudaBackend::end_recording() {
  SOLO_CHECK(recording_, "cuda: end_recording without begin_recording");
  recording_ = false;
  auto stream = static_cast<cudaStream_t>(ctx_.stream);
  cudaGraph_t graph = nullptr;
  cudaError_t err = cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec = nullptr;
  if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
  if (err != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // a failed capture leaves its error behind; the eager run starts clean
    SOLO_FAIL("cuda: the step could not be recorded as a CUDA graph (", cudaGetErrorString(err),
              "); it runs without one");
  }
  return std::make_unique<CudaGraph>(graph, exec, stream);
}

void* CudaBackend::raw_allocate(size_t bytes) {
  SOLO_CHECK(!recording_, "cuda: allocation while recording a CUDA graph");
  // A size that rounding would wrap is one that no device has.
  if (bytes > size_t{1} << 62) fail_out_of_memory(bytes, "larger than any device");
  const size_t size = rounded(bytes ? bytes : 1);
  auto it = free_blocks_.find(size);
  if (it != free_blocks_.end()) {
    void* p = it->second;
    free_blocks_.erase(it);
    return p;
  }
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, size);
  if (err != cudaSuccess) {  // release the caches and retry once before giving up
    cudaStreamSynchronize(static_cast<cudaStream_t>(ctx_.stream));
    for (auto& [s, q] : free_blocks_) cudaFree(q);
    free_blocks_.clear();
    cudaMemPool_t pool;  // kernels' scratch (cudaMallocAsync) is kept in the default pool
    if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
    err = cudaMalloc(&p, size);
  }
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clears the sticky allocation error for the next call
    fail_out_of_memory(bytes, std::string("cudaMalloc: ") + cudaGetErrorString(err));
  }
  return p;
}

void CudaBackend::raw_deallocate(void* p, size_t bytes) {
  // Kernels already queued may still read the block; the stream orders later reuse after them.
  free_blocks_.emplace(rounded(bytes ? bytes : 1), p);
}

void CudaBackend::copy_from_host(void* dst, const void* src, size_t bytes) const {
  SOLO_CHECK(!recording_, "cuda: a host copy cannot be recorded in a CUDA graph");
  if (!bytes) return;
  auto s = static_cast<cudaStream_t>(ctx_.stream);
  SOLO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  wait_for_stream();  // the host buffer may go away after return
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) const {
  SOLO_CHECK(!recording_, "cuda: a host copy cannot be recorded in a CUDA graph");
  if (!bytes) return;
  auto s = static_cast<cudaStream_t>(ctx_.stream);
  SOLO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  wait_for_stream();
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) const {
  if (!bytes || dst == src) return;
  SOLO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                                  static_cast<cudaStream_t>(ctx_.stream)));
}

void CudaBackend::synchronize() const {
  wait_for_stream();
}

void CudaBackend::wait_for_stream() const {
  auto s = static_cast<cudaStream_t>(ctx_.stream);
  if (!wait_check_) {
    SOLO_CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  // The stream may wait on a collective whose peer died: NCCL reports that as an
  // asynchronous error, which wait_check_ throws (and the communicator then aborts).
  for (;;) {
    const cudaError_t rc = cudaStreamQuery(s);
    if (rc == cudaSuccess) return;
    if (rc != cudaErrorNotReady) SOLO_CUDA_CHECK(rc);
    wait_check_();
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

}  // namespace solo
