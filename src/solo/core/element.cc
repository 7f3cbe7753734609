#include "solo/core/element.h"

#include <cstdint>
#include <cstring>

#include "solo/core/half.h"

namespace solo {

namespace {
template <class T>
T load(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(void* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
}  // namespace

double load_element(const void* p, DType dtype) {
  switch (dtype) {
    case DType::F32:
      return load<float>(p);
    case DType::F64:
      return load<double>(p);
    case DType::BF16:
      return bf16_to_f32(load<bf16>(p));
    case DType::F16:
      return f16_to_f32(load<f16>(p));
    case DType::I32:
      return load<int32_t>(p);
    case DType::I64:
      return static_cast<double>(load<int64_t>(p));
    case DType::Bool:
      return load<uint8_t>(p);
  }
  return 0;
}

void store_element(void* p, DType dtype, double value) {
  switch (dtype) {
    case DType::F32:
      return store(p, static_cast<float>(value));
    case DType::F64:
      return store(p, value);
    case DType::BF16:
      return store(p, f32_to_bf16(static_cast<float>(value)));
    case DType::F16:
      return store(p, f32_to_f16(static_cast<float>(value)));
    case DType::I32:
      return store(p, static_cast<int32_t>(value));
    case DType::I64:
      return store(p, static_cast<int64_t>(value));
    case DType::Bool:
      return store(p, static_cast<uint8_t>(value != 0.0));
  }
}

}  // namespace solo
