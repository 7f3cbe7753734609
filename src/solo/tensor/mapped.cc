// Reading the bytes of a mapped checkpoint tensor: a block of it, converted to the tensor's
// dtype. The bytes may be unaligned (safetensors packs tensors back to back), so every
// element is copied out with memcpy.
#include <cstring>
#include <vector>

#include "solo/core/error.h"
#include "solo/core/half.h"
#include "solo/tensor/tensor_impl.h"

namespace solo {

namespace {

float load_float(const std::byte* p, DType dtype) {
  switch (dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::F64: {
      double d;
      std::memcpy(&d, p, 8);
      return static_cast<float>(d);
    }
    case DType::BF16: {
      bf16 h;
      std::memcpy(&h, p, 2);
      return bf16_to_f32(h);
    }
    case DType::F16: {
      f16 h;
      std::memcpy(&h, p, 2);
      return f16_to_f32(h);
    }
    default:
      SOLO_FAIL("mapped tensor of dtype ", dtype_name(dtype), ": only float tensors are mapped");
  }
}

void store_float(float f, DType dtype, unsigned char* p) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(p, &f, 4);
      return;
    case DType::F64: {
      const double d = f;
      std::memcpy(p, &d, 8);
      return;
    }
    case DType::BF16: {
      const bf16 h = f32_to_bf16(f);
      std::memcpy(p, &h, 2);
      return;
    }
    case DType::F16: {
      const f16 h = f32_to_f16(f);
      std::memcpy(p, &h, 2);
      return;
    }
    default:
      SOLO_FAIL("a mapped tensor is read as ", dtype_name(dtype), "; only float dtypes are");
  }
}

}  // namespace

void read_mapped(const MappedBytes& m, int64_t first, int64_t count, DType to, void* dst) {
  const size_t from_size = dtype_size(m.dtype), to_size = dtype_size(to);
  SOLO_CHECK(
      first >= 0 && count >= 0 && static_cast<size_t>(first + count) * from_size <= m.bytes.size(),
      "read_mapped: elements [", first, ", ", first + count, ") lie outside the ",
      m.bytes.size() / from_size, " mapped");
  const std::byte* src = m.bytes.data() + static_cast<size_t>(first) * from_size;
  if (m.dtype == to) {
    std::memcpy(dst, src, static_cast<size_t>(count) * to_size);
    return;
  }
  auto* out = static_cast<unsigned char*>(dst);
  for (int64_t i = 0; i < count; ++i)
    store_float(load_float(src + static_cast<size_t>(i) * from_size, m.dtype), to,
                out + static_cast<size_t>(i) * to_size);
}

}  // namespace solo
