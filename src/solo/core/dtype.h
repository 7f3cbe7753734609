// Element types of tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace solo {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, Bool };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // "f32", "bf16", ... ; throws on unknown
bool is_floating(DType t);
bool is_integral(DType t);  // i32, i64, bool

}  // namespace solo
