#include "solo/comm/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "solo/core/error.h"

namespace solo::comm {

namespace {

constexpr const char* kSameCalls =
    "every rank must call the same collectives in the same order with the same sizes, on "
    "buffers of this communicator's device";

[[noreturn]] void fail_nccl(ncclResult_t rc, const char* op, const char* call, const char* hint) {
  // ncclGetLastError ignores its argument and returns the most detailed text NCCL has.
  const char* last = ncclGetLastError(nullptr);
  SOLO_FAIL(op, ": ", call, " failed: ", ncclGetErrorString(rc),
            last && *last ? std::string(" (") + last + ")" : std::string(), "; ", hint,
            " (NCCL_DEBUG=WARN prints more)");
}

void check_cuda(cudaError_t rc, const char* op, const char* call) {
  if (rc == cudaSuccess) return;
  SOLO_FAIL(op, ": ", call, " failed: ", cudaGetErrorString(rc),
            "; check that the device is healthy and the buffers are on it");
}

// Sets the current device for a scope (NCCL creates its communicator on the current device)
// and restores the caller's.
class DeviceScope {
 public:
  DeviceScope(int device, const char* op) {
    check_cuda(cudaGetDevice(&previous_), op, "cudaGetDevice");
    if (previous_ != device) check_cuda(cudaSetDevice(device), op, "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

// Types that move as data (gathers); bool travels as bytes.
ncclDataType_t nccl_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
    case DType::Bool:
      return ncclUint8;
  }
  SOLO_FAIL(op, ": dtype ", static_cast<int>(dtype),
            " has no NCCL type; use f32, f64, bf16, f16, i32, i64 or bool");
}

// Types that can be summed: as above, except bool.
ncclDataType_t nccl_sum_type(DType dtype, const char* op) {
  SOLO_CHECK(dtype != DType::Bool, op,
             ": a sum of bool is not meaningful; cast to i32 (or i64) to count, then compare");
  return nccl_type(dtype, op);
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& bootstrap, int device, void* compute_stream)
      : rank_(bootstrap.rank()),
        size_(bootstrap.size()),
        device_(device),
        compute_(static_cast<cudaStream_t>(compute_stream)) {
    constexpr const char* op = "make_nccl_communicator";
    SOLO_CHECK(!bootstrap.device_memory(), op, ": the bootstrap communicator '", bootstrap.name(),
               "' works on device memory; bootstrap over a host communicator (MPI or local)");
    // This rank's CUDA setup first, then every rank learns whether all succeeded: a rank that
    // failed alone would leave the others waiting in ncclCommInitRank.
    const std::string local_error = create_stream_and_events(op);
    int32_t failed_ranks = local_error.empty() ? 0 : 1;
    try {
      bootstrap.all_reduce_sum(&failed_ranks, 1, DType::I32);
    } catch (...) {
      release();
      throw;
    }
    if (failed_ranks > 0) {
      release();
      if (!local_error.empty()) throw Error(local_error);
      SOLO_FAIL(op, ": CUDA setup failed on ", failed_ranks,
                " other rank(s); see their errors (each rank needs a working GPU of its own)");
    }
    // Rank 0 also sends its status, so that a failure there ends every rank instead of
    // leaving them waiting for an id that never comes.
    struct {
      ncclUniqueId id;
      int32_t status;
    } boot{};
    if (rank_ == 0) boot.status = ncclGetUniqueId(&boot.id);
    try {
      bootstrap.broadcast(&boot, sizeof boot, 0);
      if (boot.status != ncclSuccess)
        fail_nccl(static_cast<ncclResult_t>(boot.status), op,
                  rank_ == 0 ? "ncclGetUniqueId" : "ncclGetUniqueId on rank 0",
                  "NCCL could not start (is a network interface up?)");
      DeviceScope scope(device, op);
      const ncclResult_t rc = ncclCommInitRank(&comm_, size_, boot.id, rank_);
      if (rc != ncclSuccess) {
        comm_ = nullptr;
        fail_nccl(rc, op, "ncclCommInitRank",
                  "each rank needs a GPU of its own (ranks sharing a GPU are refused) and every "
                  "rank must create the communicator together");
      }
    } catch (...) {
      release();
      throw;
    }
  }

  ~NcclCommunicator() override { release(); }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "nccl"; }
  bool device_memory() const override { return true; }

  void all_reduce_sum(void* data, size_t count, DType dtype) override {
    all_reduce(data, data, count, dtype, false);
  }

  bool asynchronous() const override { return true; }

  size_t start_all_reduce(const void* send, void* recv, size_t count, DType dtype,
                          bool average) override {
    const ReduceBuffer one{send, recv, count, dtype};
    queue_all_reduce({&one, 1}, average, /*join=*/false);
    return note_started("start_all_reduce");
  }

  size_t start_all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    queue_all_gather(send, recv, count, dtype, /*join=*/false);
    return note_started("start_all_gather");
  }

  // The comm stream runs the collectives in the order started: the compute stream waits for
  // the event recorded right after the ticket's collective, not for later ones.
  void wait_for(size_t ticket) override {
    constexpr const char* op = "wait_for";
    cudaEvent_t last = nullptr;
    while (!running_.empty() && running_.front().first <= ticket) {
      if (last) spare_.push_back(last);
      last = running_.front().second;
      running_.pop_front();
    }
    if (!last) return;       // waited for already
    spare_.push_back(last);  // re-recording it later does not change this wait
    check_cuda(cudaStreamWaitEvent(compute_, last, 0), op, "cudaStreamWaitEvent");
  }

  void wait_started() override {
    if (!running_.empty()) wait_for(running_.back().first);
  }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, bool average) override {
    const ReduceBuffer one{send, recv, count, dtype};
    queue_all_reduce({&one, 1}, average, /*join=*/true);
  }

  // One event pair and one NCCL group for the whole bucket: NCCL launches its reductions
  // together instead of one kernel (and two event waits) per tensor. ncclAvg divides inside
  // the collective: no second pass over the buffers. A single all-reduce is a group of one.
  void all_reduce_group(std::span<const ReduceBuffer> buffers, bool average) override {
    queue_all_reduce(buffers, average, /*join=*/true);
  }
  size_t start_all_reduce_group(std::span<const ReduceBuffer> buffers, bool average) override {
    queue_all_reduce(buffers, average, /*join=*/false);
    return note_started("start_all_reduce_group");
  }

  // Records the end of the collective just queued on the comm stream; returns its ticket.
  size_t note_started(const char* op) {
    cudaEvent_t done = nullptr;
    if (spare_.empty()) {
      check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), op,
                 "cudaEventCreateWithFlags");
    } else {
      done = spare_.back();
      spare_.pop_back();
    }
    running_.emplace_back(next_ticket_, done);  // owned from here, even if recording fails
    check_cuda(cudaEventRecord(done, stream_), op, "cudaEventRecord");
    return next_ticket_++;
  }

  void check_errors() override { check_async("a wait for queued work"); }

  void queue_all_reduce(std::span<const ReduceBuffer> buffers, bool average, bool join) {
    constexpr const char* op = "all_reduce";
    bool any = false;
    for (const ReduceBuffer& b : buffers) {
      nccl_sum_type(b.dtype, op);
      SOLO_CHECK(!average || is_floating(b.dtype), op, ": averaging needs a float dtype, got ",
                 dtype_name(b.dtype), "; cast to f32 first");
      any |= b.count > 0;
    }
    if (!any) return;
    const ncclRedOp_t red = average ? ncclAvg : ncclSum;
    enqueue(
        op, "ncclAllReduce",
        [&] {
          ncclResult_t rc = ncclGroupStart();
          for (size_t i = 0; rc == ncclSuccess && i < buffers.size(); ++i) {
            const ReduceBuffer& b = buffers[i];
            if (b.count > 0)
              rc = ncclAllReduce(b.send, b.recv, b.count, nccl_sum_type(b.dtype, op), red, comm_,
                                 stream_);
          }
          const ncclResult_t end = ncclGroupEnd();  // closes the group even after a failure
          return rc != ncclSuccess ? rc : end;
        },
        join);
  }

  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype) override {
    constexpr const char* op = "reduce_scatter_sum";
    const ncclDataType_t t = nccl_sum_type(dtype, op);
    if (count == 0) return;
    enqueue(op, "ncclReduceScatter",
            [&] { return ncclReduceScatter(send, recv, count, t, ncclSum, comm_, stream_); });
  }

  void all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    queue_all_gather(send, recv, count, dtype, /*join=*/true);
  }

  void queue_all_gather(const void* send, void* recv, size_t count, DType dtype, bool join) {
    constexpr const char* op = "all_gather";
    const ncclDataType_t t = nccl_type(dtype, op);
    if (count == 0) return;
    enqueue(
        op, "ncclAllGather", [&] { return ncclAllGather(send, recv, count, t, comm_, stream_); },
        join);
  }

  void broadcast(void* data, size_t bytes, int root) override {
    constexpr const char* op = "broadcast";
    SOLO_CHECK(root >= 0 && root < size_, op, ": root ", root, " is not a rank of this ", size_,
               "-rank job; use a root in [0, ", size_, ")");
    if (bytes == 0) return;
    enqueue(op, "ncclBroadcast",
            [&] { return ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_); });
  }

  // NCCL has no tags: messages between two ranks match in the order they are queued. Each
  // call blocks its stream until the peer's matching call runs, so two ranks exchanging
  // with each other must order their sends and receives opposite ways (a ring in which every
  // rank sends first would wait forever).
  void send(const void* data, size_t bytes, int peer, int tag) override {
    check_peer("send", peer, tag);
    if (bytes == 0) return;
    enqueue("send", "ncclSend",
            [&] { return ncclSend(data, bytes, ncclUint8, peer, comm_, stream_); });
  }

  void recv(void* data, size_t bytes, int peer, int tag) override {
    check_peer("recv", peer, tag);
    if (bytes == 0) return;
    enqueue("recv", "ncclRecv",
            [&] { return ncclRecv(data, bytes, ncclUint8, peer, comm_, stream_); });
  }

  // Returns once every rank has reached it and this rank's queued work (compute and
  // collectives) is done; the one place the host waits, watching for NCCL errors meanwhile.
  void barrier() override {
    constexpr const char* op = "barrier";
    enqueue(op, "ncclAllReduce", [&] {
      return ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, comm_, stream_);
    });
    wait_for_stream(op);
  }

  // The child has its own comm stream, events and barrier word on this device and follows the
  // same compute stream, so two groups' collectives run side by side instead of queueing on
  // one stream, and one communicator's event records never move what the other's waits see.
  // Its NCCL config is this one's (blocking). Like the constructor, every rank sets up CUDA
  // first and the ranks agree that all succeeded (a sum over this communicator, waited for on
  // the host) before ncclCommSplit, where a rank that failed alone would leave the others
  // waiting; that wait also drains this communicator's queued collectives.
  std::unique_ptr<Communicator> split(int color, int key) override {
    constexpr const char* op = "split";
    const bool joins = color >= 0;
    std::unique_ptr<NcclCommunicator> child;
    std::string local_error;
    if (joins) {
      child.reset(new NcclCommunicator(device_, compute_));
      local_error = child->create_stream_and_events(op);
    }
    const int32_t failed_ranks = sum_on_host(local_error.empty() ? 0 : 1, op);
    if (failed_ranks > 0) {
      if (!local_error.empty()) throw Error(local_error);
      SOLO_FAIL(op, ": CUDA setup failed on ", failed_ranks,
                " other rank(s); see their errors (each rank needs a working GPU of its own)");
    }
    ncclComm_t sub = nullptr;
    {
      DeviceScope scope(device_, op);
      // NCCL leaves a rank out only for exactly NCCL_SPLIT_NOCOLOR; any negative color means that.
      const ncclResult_t rc =
          ncclCommSplit(comm_, joins ? color : NCCL_SPLIT_NOCOLOR, key, &sub, nullptr);
      if (rc != ncclSuccess) {
        failed_ = true;  // ranks may be left inside the split: abort rather than destroy
        fail_nccl(rc, op, "ncclCommSplit",
                  "every rank of the communicator must call split together");
      }
    }
    if (!joins) return nullptr;
    // Owned from here: a failure below unwinds through release(), which aborts it.
    child->comm_ = sub;
    child->check_nccl(ncclCommUserRank(sub, &child->rank_), op, "ncclCommUserRank");
    child->check_nccl(ncclCommCount(sub, &child->size_), op, "ncclCommCount");
    return child;
  }

 private:
  // A split's child before ncclCommSplit: no resources yet, ranks set once NCCL made it.
  NcclCommunicator(int device, cudaStream_t compute)
      : rank_(0), size_(1), device_(device), compute_(compute) {}

  // This rank's comm stream, events and barrier word on device_. Returns the error ("" on
  // success) instead of throwing, so that the caller can first tell the other ranks; what
  // was made is freed by release().
  std::string create_stream_and_events(const char* op) {
    try {
      DeviceScope scope(device_, op);
      check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), op,
                 "cudaStreamCreateWithFlags");
      check_cuda(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming), op,
                 "cudaEventCreateWithFlags");
      check_cuda(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming), op,
                 "cudaEventCreateWithFlags");
      check_cuda(cudaMalloc(&barrier_word_, sizeof(int32_t)), op, "cudaMalloc");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  void check_nccl(ncclResult_t rc, const char* op, const char* call) {
    if (rc == ncclSuccess) return;
    failed_ = true;
    fail_nccl(rc, op, call, kSameCalls);
  }

  // The sum of value over the ranks, read back on the host (setup only: split's agreement).
  // Waits like barrier(), watching for NCCL errors, then copies the result off the idle stream.
  int32_t sum_on_host(int32_t value, const char* op) {
    // From pageable memory the copy is staged before cudaMemcpyAsync returns.
    check_cuda(
        cudaMemcpyAsync(barrier_word_, &value, sizeof value, cudaMemcpyHostToDevice, stream_), op,
        "cudaMemcpyAsync");
    enqueue(op, "ncclAllReduce", [&] {
      return ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, comm_, stream_);
    });
    wait_for_stream(op);
    check_cuda(
        cudaMemcpyAsync(&value, barrier_word_, sizeof value, cudaMemcpyDeviceToHost, stream_), op,
        "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream_), op, "cudaStreamSynchronize");
    return value;
  }

  // Polls until the comm stream is idle, checking for NCCL errors: a peer that never comes
  // ends the wait with NCCL's error instead of a hang.
  void wait_for_stream(const char* op) {
    for (;;) {
      const cudaError_t rc = cudaStreamQuery(stream_);
      if (rc == cudaSuccess) return;
      if (rc != cudaErrorNotReady) check_cuda(rc, op, "cudaStreamQuery");
      check_async(op);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  // compute stream -> comm stream -> compute stream, by events: the collective starts after
  // the compute work queued so far, and compute work queued later starts after it (which
  // also keeps the backend's stream-ordered reuse of freed buffers safe).
  // join = false leaves the second half to wait_for() (note_started records its event).
  template <class Call>
  void enqueue(const char* op, const char* call, Call&& nccl_call, bool join = true) {
    check_async(op);
    check_cuda(cudaEventRecord(compute_done_, compute_), op, "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, compute_done_, 0), op, "cudaStreamWaitEvent");
    const ncclResult_t rc = nccl_call();
    if (rc != ncclSuccess) {
      failed_ = true;
      fail_nccl(rc, op, call, kSameCalls);
    }
    if (!join) return;
    check_cuda(cudaEventRecord(comm_done_, stream_), op, "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(compute_, comm_done_, 0), op, "cudaStreamWaitEvent");
  }

  // Errors of collectives already queued (a peer that died, a broken link) surface here.
  void check_async(const char* op) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
    if (rc != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
      failed_ = true;
      fail_nccl(rc != ncclSuccess ? rc : state, op, "an earlier collective",
                "a peer rank failed or the link between ranks broke; see the other ranks' errors");
    }
  }

  void check_peer(const char* op, int peer, int tag) const {
    SOLO_CHECK(peer >= 0 && peer < size_, op, ": peer ", peer, " is not a rank of this ", size_,
               "-rank job; use a peer in [0, ", size_, ")");
    SOLO_CHECK(peer != rank_, op, ": rank ", rank_,
               " cannot send to or receive from itself; copy the buffer instead");
    SOLO_CHECK(tag >= 0, op, ": tag ", tag, " is negative; use a tag >= 0");
  }

  // ncclCommDestroy waits for this rank's queued collectives, which, after an error or while
  // an exception unwinds this rank alone, may wait for peers that never come: abort then
  // (stops them, no wait). Either call blocks while a CUDA graph holding kernels of this
  // communicator lives, so device contexts drop their recordings first.
  void release() noexcept {
    if (comm_) {
      ncclResult_t state = ncclSuccess;
      if (!failed_ && std::uncaught_exceptions() == 0 &&
          ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclSuccess)
        ncclCommDestroy(comm_);  // waits for queued collectives
      else
        ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    // Destroying a stream or event with work pending is allowed: CUDA frees them once done.
    if (barrier_word_) cudaFree(barrier_word_);
    for (const auto& [ticket, done] : running_) cudaEventDestroy(done);
    for (cudaEvent_t done : spare_) cudaEventDestroy(done);
    running_.clear();
    spare_.clear();
    if (comm_done_) cudaEventDestroy(comm_done_);
    if (compute_done_) cudaEventDestroy(compute_done_);
    if (stream_) cudaStreamDestroy(stream_);
    barrier_word_ = nullptr;
    comm_done_ = compute_done_ = nullptr;
    stream_ = nullptr;
  }

  int rank_;
  int size_;
  int device_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t compute_done_ = nullptr;  // recorded on compute_, waited on by stream_
  cudaEvent_t comm_done_ = nullptr;     // recorded on stream_, waited on by compute_
  // Started collectives compute does not wait for yet: ticket, event recorded after it.
  std::deque<std::pair<size_t, cudaEvent_t>> running_;
  std::vector<cudaEvent_t> spare_;  // events of waited-for collectives, for reuse
  size_t next_ticket_ = 1;          // 0 means "done already"
  void* barrier_word_ = nullptr;    // one int32 barrier() reduces; its value is unused
  ncclComm_t comm_ = nullptr;
  bool failed_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                     void* compute_stream) {
  return std::make_unique<NcclCommunicator>(bootstrap, device, compute_stream);
}

bool nccl_available() {
  int version = 0;
  return ncclGetVersion(&version) == ncclSuccess && version > 0;
}

}  // namespace solo::comm
