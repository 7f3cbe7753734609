// One element of a host buffer of any dtype, read or written as a double. The bytes may be
// unaligned (safetensors packs tensors back to back), so every access is a memcpy.
#pragma once
#include "solo/core/dtype.h"

namespace solo {

double load_element(const void* p, DType dtype);
// Rounds to the dtype (bf16 and f16 through f32, integers by truncation, bool: nonzero).
void store_element(void* p, DType dtype, double value);

}  // namespace solo
