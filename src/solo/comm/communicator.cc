#include "solo/comm/communicator.h"

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

void Communicator::all_reduce(void* data, size_t count, DType dtype, bool average) {
  // Checked before the sum so that no rank is left holding a sum it cannot turn into a mean.
  SOLO_CHECK(!average || dtype == DType::F32 || dtype == DType::F64,
             "all_reduce: averaging needs f32 or f64 on communicator '", name(), "', got ",
             dtype_name(dtype), "; cast to f32 first");
  all_reduce_sum(data, count, dtype);
  if (!average || size() == 1) return;
  const double inv = 1.0 / size();
  if (dtype == DType::F32)
    scale<float>(data, count, inv);
  else
    scale<double>(data, count, inv);
}

}  // namespace solo::comm
