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

namespace {
constexpr size_t kLargeBlock = 1 << 20;  // blocks from 1 MiB up are cached
constexpr size_t kCacheLimit = size_t{16} << 30;
size_t rounded_size(size_t bytes) {
  if (bytes >= kLargeBlock) return (bytes + kLargeBlock - 1) / kLargeBlock * kLargeBlock;
  return bytes ? (bytes + 63) / 64 * 64 : 64;
}
}  // namespace

HostBackend::~HostBackend() {
  for (auto& [size, p] : cache_) std::free(p);
}

void* HostBackend::raw_allocate(size_t bytes) {
  const size_t size = rounded_size(bytes);
  if (size >= kLargeBlock) {
    auto it = cache_.find(size);
    if (it != cache_.end()) {
      void* p = it->second;
      cache_.erase(it);
      cached_bytes_ -= size;
      return p;
    }
  }
  void* p = std::aligned_alloc(64, size);
  if (!p) throw std::bad_alloc();
  return p;
}

void HostBackend::raw_deallocate(void* p, size_t bytes) {
  const size_t size = rounded_size(bytes);
  if (size >= kLargeBlock && cached_bytes_ + size <= kCacheLimit) {
    cache_.emplace(size, p);
    cached_bytes_ += size;
    return;
  }
  std::free(p);
}

}  // namespace solo
