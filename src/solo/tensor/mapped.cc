// Reading the bytes of a mapped checkpoint tensor: a block of it, converted to the tensor's
// dtype. The bytes may be unaligned (safetensors packs tensors back to back), so every
// element is copied out with memcpy.
#include <cstring>
#include <vector>

#include "solo/core/element.h"
#include "solo/core/error.h"
#include "solo/tensor/tensor_impl.h"

namespace solo {

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
  SOLO_CHECK(is_floating(m.dtype) && is_floating(to), "read_mapped: ", dtype_name(m.dtype),
             " read as ", dtype_name(to), "; only float tensors are mapped");
  auto* out = static_cast<unsigned char*>(dst);
  for (int64_t i = 0; i < count; ++i)
    store_element(out + static_cast<size_t>(i) * to_size, to,
                  load_element(src + static_cast<size_t>(i) * from_size, m.dtype));
}

}  // namespace solo
