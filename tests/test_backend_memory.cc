// Out of device memory: an allocation beyond a device's limit, and one larger than the host
// itself, are each one solo::Error line with the bytes asked for, the bytes in use and the
// limit, the device and what to change; never a bare std::bad_alloc.
#include <gtest/gtest.h>

#include <cstddef>
#include <new>
#include <string>

#include "solo/backend/backend.h"
#include "solo/core/error.h"
#include "solo/core/process_place.h"

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer aborts on an allocation above its maximum (1 TiB) instead of returning
// null as the C library does; the host test below needs the null.
extern "C" const char* __asan_default_options() {
  return "allocator_may_return_null=1";
}
#endif

namespace solo {
namespace {

constexpr const char* kFix =
    "; lower --batch-size or --block-size, or switch to a flavor with more devices (solo "
    "switch); a plan that shards (SOLO_PLAN zero=3) or recomputes (recompute=block) needs less "
    "too";

// The message of the solo::Error that allocating `bytes` on `b` throws ("" when it does not).
std::string allocation_error(Backend& b, size_t bytes) {
  try {
    void* p = b.allocate(bytes);
    b.deallocate(p, bytes);
  } catch (const Error& e) {
    return e.what();
  } catch (const std::bad_alloc&) {
    return "std::bad_alloc";
  }
  return "";
}

// Sets this process's place in its job for one test.
struct Place {
  explicit Place(int rank, int ranks) { set_process_place({rank, ranks}); }
  ~Place() { set_process_place({}); }
};

TEST(OutOfMemory, BeyondTheDeviceLimitNamesBytesDeviceAndFix) {
  const Place place(1, 4);
  const auto cpu = make_backend("cpu");
  cpu->set_memory_limit(size_t{12} << 20);
  void* held = cpu->allocate(size_t{10} << 20);
  const std::string e = allocation_error(*cpu, (size_t{17} << 20) / 4);
  EXPECT_EQ(e, std::string("out of device memory on cpu rank 1: 4.25 MiB (4456448 bytes) asked "
                           "for with 10 MiB in use of the device's 12 MiB") +
                   kFix);
  EXPECT_EQ(e.find('\n'), std::string::npos);
  // What fits still fits, and the failed allocation took nothing.
  EXPECT_EQ(cpu->bytes_in_use(), size_t{10} << 20);
  EXPECT_EQ(allocation_error(*cpu, size_t{2} << 20), "");
  cpu->deallocate(held, size_t{10} << 20);
}

// 1 PiB is more than any host's memory and than x86-64's address space: the C library
// refuses it at once, without touching memory (so the OOM killer is never involved).
TEST(OutOfMemory, HostAllocationLargerThanTheMachineIsAnErrorNotBadAlloc) {
  const auto cpu = make_backend("cpu");
  const size_t pib = size_t{1} << 50;
  EXPECT_EQ(allocation_error(*cpu, pib),
            std::string("out of device memory on cpu rank 0: 1 PiB (1125899906842624 bytes) "
                        "asked for with 0 B in use (the host cannot allocate it)") +
                kFix);
  EXPECT_EQ(cpu->bytes_in_use(), 0u);
  // A size that rounding up would wrap around is refused too, not shrunk.
  const std::string wrap = allocation_error(*cpu, ~size_t{0} - 8);
  EXPECT_TRUE(wrap.starts_with("out of device memory on cpu rank 0: 16 EiB")) << wrap;
}

TEST(OutOfMemory, ReferenceBackendSaysTheSame) {
  const Place place(0, 2);
  const auto ref = make_backend("reference");
  ref->set_memory_limit(1 << 20);
  const std::string e = allocation_error(*ref, 2 << 20);
  EXPECT_EQ(e, std::string("out of device memory on reference rank 0: 2 MiB (2097152 bytes) "
                           "asked for with 0 B in use of the device's 1 MiB") +
                   kFix);
}

}  // namespace
}  // namespace solo
