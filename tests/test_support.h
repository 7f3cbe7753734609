// Small helpers shared by test files: the dtype of a C++ element type, and the message of
// the solo::Error a call throws.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>

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

}  // namespace solo::test
