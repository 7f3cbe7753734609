// The backend interface: memory plus one kernel per op. Backends depend only on core and
// this file; they never see the graph, only one op call at a time.
#pragma once
#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "solo/core/attrs.h"
#include "solo/core/dtype.h"
#include "solo/core/error.h"
#include "solo/core/op_kind.h"
#include "solo/core/shape.h"

namespace solo {

// A view of a dense row-major tensor in a backend's memory (data is null on `meta`).
struct TensorRef {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::F32;

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

struct KernelCall {
  OpKind op;
  const Attrs& attrs;
  std::span<const TensorRef> in;  // absent optional operands are omitted (they come last)
  std::span<const TensorRef> out;
  // Backend state a kernel needs (the CUDA backend passes its stream and BLAS handle);
  // null on host backends.
  void* context = nullptr;
};

using Kernel = void (*)(const KernelCall&);

class KernelTable {
 public:
  void set(OpKind op, Kernel k) { kernels_[static_cast<size_t>(op)] = k; }
  Kernel get(OpKind op) const { return kernels_[static_cast<size_t>(op)]; }

 private:
  std::array<Kernel, kNumOps> kernels_{};
};

// Work a backend queued once and can queue again as a whole (a CUDA graph): a replay reads
// and writes exactly the addresses the recording saw.
class Recording {
 public:
  virtual ~Recording() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // False for `meta`, whose memory is accounted but never touched.
  virtual bool holds_data() const { return true; }
  // True when tensors live in host memory (cpu, reference, meta's nothing); false for device
  // memory (cuda), which collectives need a device communicator for.
  virtual bool host_memory() const { return true; }

  // The device's memory (0: unlimited): an allocation beyond it is an error naming the
  // sizes and what needs less, instead of the host swapping or the device failing later.
  void set_memory_limit(size_t bytes) { limit_ = bytes; }
  size_t memory_limit() const { return limit_; }
  // Allocation is accounted here so the executor's peak can be checked against the plan.
  // An allocation that does not fit (the limit, or the memory itself) throws solo::Error
  // with fail_out_of_memory's line, never std::bad_alloc.
  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  size_t bytes_in_use() const { return in_use_; }
  size_t peak_bytes() const { return peak_; }
  void reset_peak() { peak_ = in_use_; }

  // Runs one op; throws if this backend has no kernel for it.
  virtual void run(const KernelCall& call) const;
  bool has_kernel(OpKind op) const { return kernels_.get(op) != nullptr; }
  // Device <-> host copies of `bytes` bytes, and device-to-device.
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) const = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) const = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) const = 0;
  // Waits for queued work (asynchronous backends); used to time ops one by one.
  virtual void synchronize() const {}
  // Asynchronous backends: the device index and the stream (cudaStream_t) their work is queued
  // on, so that a device communicator can order its collectives with it. -1 and null otherwise.
  virtual int device_index() const { return -1; }
  // The device's model as its driver names it ("NVIDIA H200"), "" where it has none (hosts):
  // the planner finds its catalogue profile by it.
  virtual std::string device_model() const { return ""; }
  virtual void* stream() const { return nullptr; }
  // Asynchronous backends: called over and over while the host waits for queued work, so
  // that a failed collective on another stream (a dead peer) ends the wait with its error
  // instead of a hang. Null: wait without checks.
  virtual void set_wait_check(std::function<void()> check) { (void)check; }

  // The device as an error names it: "cpu rank 1", "cuda:0 (rank 1)" (the process's rank in
  // its job, core/process_place.h).
  std::string device_label() const;
  // The one line for an allocation of `bytes` that does not fit: the bytes asked for, the
  // bytes in use and the limit, the device, `cause` when there is one (the allocator that
  // refused it), and what to change.
  [[noreturn]] void fail_out_of_memory(size_t bytes, const std::string& cause = "") const;

  // Recording (backends where queueing work costs more than running it: cuda). Between
  // begin_recording and end_recording, run() and copy() record instead of running; the
  // recorded work runs at each replay(). Nothing may allocate or read back in between.
  // end_recording must follow begin_recording, also when a recorded call threw.
  virtual bool can_record() const { return false; }
  virtual void begin_recording();
  virtual std::unique_ptr<Recording> end_recording();

 protected:
  virtual void* raw_allocate(size_t bytes) = 0;
  virtual void raw_deallocate(void* p, size_t bytes) = 0;
  KernelTable kernels_;

 private:
  size_t in_use_ = 0;
  size_t peak_ = 0;
  size_t limit_ = 0;
};

// Memory owned by a backend for a tensor that outlives one graph run (parameters, outputs).
class Storage {
 public:
  Storage(Backend& backend, size_t bytes)
      : backend_(&backend), bytes_(bytes), data_(backend.allocate(bytes)) {}
  ~Storage() { backend_->deallocate(data_, bytes_); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Backend& backend() const { return *backend_; }

 private:
  Backend* backend_;
  size_t bytes_;
  void* data_;
};

// Backends by name: "cpu", "meta", "reference" (naive kernels, for tests) and, when built
// with CUDA, "cuda". Throws naming the available ones for an unknown name.
std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace solo
