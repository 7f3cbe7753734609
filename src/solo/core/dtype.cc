#include "solo/core/dtype.h"

#include "solo/core/error.h"

namespace solo {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64:
    case DType::I64:
      return 8;
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::BF16:
    case DType::F16:
      return 2;
    case DType::Bool:
      return 1;
  }
  SOLO_FAIL("invalid dtype ", static_cast<int>(t));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
    case DType::I64:
      return "i64";
    case DType::Bool:
      return "bool";
  }
  return "invalid";
}

DType dtype_from_name(const std::string& name) {
  for (DType t :
       {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::Bool})
    if (name == dtype_name(t)) return t;
  SOLO_FAIL("unknown dtype '", name, "': use one of f32, f64, bf16, f16, i32, i64, bool");
}

bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}
bool is_integral(DType t) {
  return !is_floating(t);
}

}  // namespace solo
