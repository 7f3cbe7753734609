#include "solo/backend/host_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "solo/core/half.h"
#include "solo/core/op_info.h"

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

bool is_half(DType dt) {
  return dt == DType::BF16 || dt == DType::F16;
}

constexpr size_t kLargeBlock = 1 << 20;  // blocks from 1 MiB up are cached
constexpr size_t kCacheLimit = size_t{16} << 30;
size_t rounded_size(size_t bytes) {
  if (bytes >= kLargeBlock) return (bytes + kLargeBlock - 1) / kLargeBlock * kLargeBlock;
  return bytes ? (bytes + 63) / 64 * 64 : 64;
}

}  // namespace

void HostBackend::widen(const TensorRef& half, float* out) const {
  const int64_t n = half.numel();
  if (half.dtype == DType::BF16)
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(half.as<bf16>()[i]);
  else
    for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(half.as<f16>()[i]);
}

void HostBackend::narrow(const float* in, const TensorRef& half) const {
  const int64_t n = half.numel();
  if (half.dtype == DType::BF16)
    for (int64_t i = 0; i < n; ++i) half.as<bf16>()[i] = f32_to_bf16(in[i]);
  else
    for (int64_t i = 0; i < n; ++i) half.as<f16>()[i] = f32_to_f16(in[i]);
}

// The f32 copies of one call, handed back to the cache when the call ends (also on a throw).
class HostBackend::Scratch {
 public:
  explicit Scratch(const HostBackend& owner) : owner_(owner) {}
  ~Scratch() {
    for (auto [p, bytes] : blocks_) owner_.give_block(p, bytes);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  // An uninitialised f32 view with t's shape: every element is written before it is read.
  TensorRef f32_like(const TensorRef& t) {
    const size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
    blocks_.emplace_back(owner_.take_block(bytes), bytes);
    return {blocks_.back().first, t.shape, DType::F32};
  }

 private:
  const HostBackend& owner_;
  std::vector<std::pair<void*, size_t>> blocks_;
};

void HostBackend::run(const KernelCall& call) const {
  bool any_half = false;
  for (const TensorRef& t : call.in) any_half |= is_half(t.dtype);
  for (const TensorRef& t : call.out) any_half |= is_half(t.dtype);
  if (!any_half || op_info(call.op).moves_elements) return Backend::run(call);
  const HalfKernel native = half_kernels_[static_cast<size_t>(call.op)];
  if (native && native(call)) return;
  Scratch scratch(*this);
  std::vector<TensorRef> in(call.in.begin(), call.in.end()), out(call.out.begin(), call.out.end());
  for (TensorRef& t : in)
    if (is_half(t.dtype)) {
      const TensorRef wide = scratch.f32_like(t);
      widen(t, wide.as<float>());
      t = wide;
    }
  for (TensorRef& t : out)
    if (is_half(t.dtype)) t = scratch.f32_like(t);
  Backend::run(KernelCall{call.op, call.attrs, in, out, call.context});
  for (size_t k = 0; k < out.size(); ++k)
    if (is_half(call.out[k].dtype)) narrow(out[k].as<float>(), call.out[k]);
}

HostBackend::~HostBackend() {
  for (auto& [size, p] : cache_) std::free(p);
}

void* HostBackend::take_block(size_t bytes) const {
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
  // A size that rounding would wrap is one that no host has.
  void* p = bytes > size_t{1} << 62 ? nullptr : std::aligned_alloc(64, size);
  if (p == nullptr) fail_out_of_memory(bytes, "the host cannot allocate it");
  return p;
}

void HostBackend::give_block(void* p, size_t bytes) const {
  const size_t size = rounded_size(bytes);
  if (size >= kLargeBlock && cached_bytes_ + size <= kCacheLimit) {
    cache_.emplace(size, p);
    cached_bytes_ += size;
    return;
  }
  std::free(p);
}

void* HostBackend::raw_allocate(size_t bytes) {
  return take_block(bytes);
}

void HostBackend::raw_deallocate(void* p, size_t bytes) {
  give_block(p, bytes);
}

}  // namespace solo
