#include "solo/backend/host_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace solo {

void HostBackend::copy_from_host(void* dst, const void* src, size_t bytes) const {
  if (bytes) std::memcpy(dst, src, bytes);
}
void HostBackend::copy_to_host(void* dst, const void* src, size_t bytes) const {
  if (bytes) std::memcpy(dst, src, bytes);
}
void HostBackend::copy(void* dst, const void* src, size_t bytes) const {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}

void* HostBackend::raw_allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded ? rounded : 64);
  if (!p) throw std::bad_alloc();
  return p;
}
void HostBackend::raw_deallocate(void* p, size_t) {
  std::free(p);
}

}  // namespace solo
