#include "solo/backend/backend.h"

namespace solo {

void* Backend::allocate(size_t bytes) {
  if (limit_ != 0 && in_use_ + bytes > limit_) {
    auto mib = [](size_t b) { return static_cast<double>(b) / (1 << 20); };
    SOLO_FAIL("out of device memory on ", name(), ": ", mib(bytes), " MiB more with ", mib(in_use_),
              " MiB in use exceeds the device's ", mib(limit_),
              " MiB; a plan that shards more (zero=3) or recomputes (recompute=block), or a "
              "smaller batch, needs less");
  }
  void* p = raw_allocate(bytes);
  in_use_ += bytes;
  if (in_use_ > peak_) peak_ = in_use_;
  return p;
}

void Backend::deallocate(void* p, size_t bytes) {
  raw_deallocate(p, bytes);
  in_use_ -= bytes;
}

void Backend::run(const KernelCall& call) const {
  Kernel k = kernels_.get(call.op);
  SOLO_CHECK(k != nullptr, "op ", op_name(call.op), " has no kernel on backend '", name(),
             "'; run it on the cpu backend or add the kernel");
  k(call);
}

void Backend::begin_recording() {
  SOLO_FAIL("backend '", name(), "' cannot record work; check can_record() first");
}

std::unique_ptr<Recording> Backend::end_recording() {
  SOLO_FAIL("backend '", name(), "' cannot record work; check can_record() first");
}

}  // namespace solo
