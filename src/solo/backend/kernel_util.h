// Small helpers shared by kernel files: dtype dispatch and broadcast indexing.
#pragma once
#include <cstdint>
#include <vector>

#include "solo/backend/backend.h"
#include "solo/core/half.h"

namespace solo::kernels {

// Calls f(T{}) with T = float or double by dtype; other dtypes throw naming the op.
template <class F>
void dispatch_float(OpKind op, DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::F64:
      f(double{});
      return;
    default:
      SOLO_FAIL(op_name(op), ": dtype ", dtype_name(dt),
                " is not supported by this kernel; cast to f32 first");
  }
}

// Reads an integer tensor element (i32, i64 or bool) as int64.
inline int64_t read_index(const TensorRef& t, int64_t i) {
  switch (t.dtype) {
    case DType::I32:
      return t.as<int32_t>()[i];
    case DType::I64:
      return t.as<int64_t>()[i];
    case DType::Bool:
      return t.as<uint8_t>()[i];
    default:
      SOLO_FAIL("expected an integer tensor, got ", dtype_name(t.dtype));
  }
}

// Reads any tensor element as a truth value (nonzero = true).
inline bool read_truth(const TensorRef& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32:
      return t.as<float>()[i] != 0.f;
    case DType::F64:
      return t.as<double>()[i] != 0.0;
    case DType::BF16:
      return bf16_to_f32(t.as<bf16>()[i]) != 0.f;
    case DType::F16:
      return f16_to_f32(t.as<f16>()[i]) != 0.f;
    default:
      return read_index(t, i) != 0;
  }
}

// Strides (in elements) for reading `in` as if broadcast to `out`: 0 on broadcast dims.
// The result has out.rank() entries.
inline std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(static_cast<size_t>(out.rank()), 0);
  const auto in_strides = in.strides();
  for (int i = 0; i < in.rank(); ++i) {
    const int o = out.rank() - in.rank() + i;
    if (in[i] != 1) s[static_cast<size_t>(o)] = in_strides[static_cast<size_t>(i)];
  }
  return s;
}

// Offset into a broadcast input for flat output index `flat`.
inline int64_t broadcast_offset(int64_t flat, const Shape& out,
                                const std::vector<int64_t>& strides) {
  int64_t off = 0;
  for (int d = out.rank() - 1; d >= 0; --d) {
    const int64_t n = out[d];
    off += (flat % n) * strides[static_cast<size_t>(d)];
    flat /= n;
  }
  return off;
}

}  // namespace solo::kernels
