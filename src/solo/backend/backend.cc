#include "solo/backend/backend.h"

#include <cstdio>
#include <iterator>
#include <new>

#include "solo/core/process_place.h"

namespace solo {

namespace {

// "4.25 MiB", "1 PiB", "512 B": three significant digits in the largest unit that fits.
std::string format_bytes(size_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.3g %s", v, kUnits[unit]);
  return text;
}

}  // namespace

std::string Backend::device_label() const {
  const ProcessPlace& place = process_place();
  if (device_index() >= 0)
    return detail::concat(name(), ":", device_index(), " (rank ", place.rank, ")");
  return detail::concat(name(), " rank ", place.rank);
}

void Backend::fail_out_of_memory(size_t bytes, const std::string& cause) const {
  std::string in_use = format_bytes(in_use_) + " in use";
  if (limit_ != 0) in_use += " of the device's " + format_bytes(limit_);
  SOLO_FAIL("out of device memory on ", device_label(), ": ", format_bytes(bytes), " (", bytes,
            " bytes) asked for with ", in_use, cause.empty() ? "" : " (" + cause + ")",
            "; lower --batch-size or --block-size, or switch to a flavor with more devices "
            "(solo switch); a plan that shards (SOLO_PLAN zero=3) or recomputes "
            "(recompute=block) needs less too");
}

void* Backend::allocate(size_t bytes) {
  if (limit_ != 0 && (in_use_ > limit_ || bytes > limit_ - in_use_)) fail_out_of_memory(bytes);
  void* p = nullptr;
  try {
    p = raw_allocate(bytes);
  } catch (const std::bad_alloc&) {  // a backend's bookkeeping, should the host run out too
    fail_out_of_memory(bytes, "the host is out of memory");
  }
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
