// Small helpers shared by test files: the dtype of a C++ element type, the message of the
// solo::Error a call throws, and a base for communicators that stand in for a job.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "solo/comm/communicator.h"
#include "solo/core/dtype.h"
#include "solo/core/error.h"

namespace solo::test {

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::F32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::F64;
  else if constexpr (std::is_same_v<T, int32_t>)
    return DType::I32;
  else
    return DType::I64;
}

// Runs f and returns the solo::Error message it throws ("" when it throws nothing).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Base of the communicators that single-process tests define to stand in for a job: the
// collectives a test does not use fail if called.
class SingleProcessCommunicator : public comm::Communicator {
 public:
  void reduce_scatter_sum(const void*, void*, size_t, DType) override { unused(); }
  void all_gather(const void*, void*, size_t, DType) override { unused(); }
  void broadcast(void*, size_t, int) override { unused(); }
  void send(const void*, size_t, int, int) override { unused(); }
  void recv(void*, size_t, int, int) override { unused(); }
  void barrier() override {}
  std::unique_ptr<comm::Communicator> split(int, int) override { unused(); }

 private:
  [[noreturn]] void unused() const { SOLO_FAIL(name(), " communicator: not used in this test"); }
};

}  // namespace solo::test
