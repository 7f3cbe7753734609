// Shared base of the backends whose memory is host memory (cpu, reference).
#pragma once
#include "solo/backend/backend.h"

namespace solo {

class HostBackend : public Backend {
 public:
  void copy_from_host(void* dst, const void* src, size_t bytes) const override;
  void copy_to_host(void* dst, const void* src, size_t bytes) const override;
  void copy(void* dst, const void* src, size_t bytes) const override;

 protected:
  void* raw_allocate(size_t bytes) override;  // 64-byte aligned, zero-size allowed
  void raw_deallocate(void* p, size_t bytes) override;
};

}  // namespace solo
