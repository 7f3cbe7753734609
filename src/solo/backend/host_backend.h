// Shared base of the backends whose memory is host memory (cpu, reference).
#pragma once
#include <array>
#include <map>

#include "solo/backend/backend.h"

namespace solo {

// Large blocks are cached by size and reused: a training step allocates the same arena and
// outputs every step, and handing them back to the OS would page-fault (and zero) hundreds
// of megabytes per step.
class HostBackend : public Backend {
 public:
  ~HostBackend() override;
  void copy_from_host(void* dst, const void* src, size_t bytes) const override;
  void copy_to_host(void* dst, const void* src, size_t bytes) const override;
  void copy(void* dst, const void* src, size_t bytes) const override;
  // Host kernels compute in f32 or f64. An op with bf16 or f16 operands (other than the ops
  // that only move elements) runs on f32 copies of them and its half results are rounded
  // back: the arithmetic of the GPU kernels, which load halves, compute in f32 and store
  // halves. So programs under autocast run on every flavor. A half kernel registered for the
  // op (set_half_kernel) is tried first and takes the halves as they are.
  void run(const KernelCall& call) const override;

 protected:
  void* raw_allocate(size_t bytes) override;  // 64-byte aligned, zero-size allowed
  void raw_deallocate(void* p, size_t bytes) override;

  // The f32 copy of a half tensor and the rounding back; serial here, so the reference
  // backend stays plain. The cpu backend converts large tensors in parallel.
  virtual void widen(const TensorRef& half, float* out) const;
  virtual void narrow(const float* in, const TensorRef& half) const;

  // A kernel that computes on bf16/f16 operands without f32 copies. It returns false, having
  // written nothing, for a call it does not handle (a dtype combination, a CPU without the
  // instructions); the call then runs widened.
  using HalfKernel = bool (*)(const KernelCall&);
  void set_half_kernel(OpKind op, HalfKernel k) { half_kernels_[static_cast<size_t>(op)] = k; }

 private:
  class Scratch;
  // Blocks from the cache that are not accounted: the f32 copies live only during one call,
  // and the accounted peak must stay the memory plan's peak (tensors only).
  void* take_block(size_t bytes) const;
  void give_block(void* p, size_t bytes) const;

  std::array<HalfKernel, kNumOps> half_kernels_{};
  mutable std::multimap<size_t, void*> cache_;  // free large blocks by rounded size
  mutable size_t cached_bytes_ = 0;
};

}  // namespace solo
