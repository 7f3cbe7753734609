#include "solo/comm/communicator.h"

#include <cstring>

#include "solo/comm/comm_detail.h"
#include "solo/core/error.h"

namespace solo::comm {

namespace {

// data[i] *= factor for count elements of a host buffer.
template <class T>
void scale(void* data, size_t count, double factor) {
  auto* p = static_cast<T*>(data);
  const auto f = static_cast<T>(factor);
  for (size_t i = 0; i < count; ++i) p[i] *= f;
}

}  // namespace

namespace detail {

void check_average_dtype(const Communicator& c, DType dtype) {
  // Checked before the sum so that no rank is left holding a sum it cannot turn into a mean.
  SOLO_CHECK(dtype == DType::F32 || dtype == DType::F64, "all_reduce: averaging needs f32 or f64 ",
             "on communicator '", c.name(), "', got ", dtype_name(dtype), "; cast to f32 first");
}

void divide_by_ranks(const Communicator& c, void* data, size_t count, DType dtype) {
  if (c.size() == 1) return;
  const double inv = 1.0 / c.size();
  if (dtype == DType::F32)
    scale<float>(data, count, inv);
  else
    scale<double>(data, count, inv);
}

}  // namespace detail

void Communicator::all_reduce(const void* send, void* recv, size_t count, DType dtype,
                              bool average) {
  if (average) detail::check_average_dtype(*this, dtype);
  if (send != recv && count) std::memcpy(recv, send, count * dtype_size(dtype));
  all_reduce_sum(recv, count, dtype);
  if (average) detail::divide_by_ranks(*this, recv, count, dtype);
}

}  // namespace solo::comm
