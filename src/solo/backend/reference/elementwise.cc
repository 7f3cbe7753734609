#include "solo/backend/kernel_util.h"
#include "solo/backend/reference/reference_backend.h"

namespace solo {
namespace {

using kernels::broadcast_offset;
using kernels::broadcast_strides;
using kernels::dispatch_float;

void full(const KernelCall& c) {
  const TensorRef& y = c.out[0];
  const double v = c.attrs.f("value");
  auto fill = [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i) y.as<T>()[i] = static_cast<T>(v);
  };
  switch (y.dtype) {
    case DType::F32: fill(float{}); break;
    case DType::F64: fill(double{}); break;
    case DType::I32: fill(int32_t{}); break;
    case DType::I64: fill(int64_t{}); break;
    case DType::Bool: fill(uint8_t{}); break;
    case DType::BF16:
      for (int64_t i = 0; i < y.numel(); ++i) y.as<bf16>()[i] = f32_to_bf16(static_cast<float>(v));
      break;
    case DType::F16:
      for (int64_t i = 0; i < y.numel(); ++i) y.as<f16>()[i] = f32_to_f16(static_cast<float>(v));
      break;
  }
}

// y[i] = a[bcast(i)] + b[bcast(i)]
void add(const KernelCall& c) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const auto sa = broadcast_strides(a.shape, y.shape), sb = broadcast_strides(b.shape, y.shape);
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i)
      y.as<T>()[i] = a.as<T>()[broadcast_offset(i, y.shape, sa)] +
                     b.as<T>()[broadcast_offset(i, y.shape, sb)];
  });
}

void mul(const KernelCall& c) {
  const TensorRef &a = c.in[0], &b = c.in[1], &y = c.out[0];
  const auto sa = broadcast_strides(a.shape, y.shape), sb = broadcast_strides(b.shape, y.shape);
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i)
      y.as<T>()[i] = a.as<T>()[broadcast_offset(i, y.shape, sa)] *
                     b.as<T>()[broadcast_offset(i, y.shape, sb)];
  });
}

// y = x summed over attrs "axes": each input element adds into the output element that its
// index maps to once the reduced axes are dropped.
void sum(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const auto& axes = c.attrs.ints("axes");
  std::vector<int64_t> kept = x.shape.dims();
  for (int64_t a : axes) kept[static_cast<size_t>(a)] = 1;
  const auto strides = broadcast_strides(Shape(kept), x.shape);
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i) y.as<T>()[i] = T(0);
    for (int64_t i = 0; i < x.numel(); ++i)
      y.as<T>()[broadcast_offset(i, x.shape, strides)] += x.as<T>()[i];
  });
}

void broadcast_to(const KernelCall& c) {
  const TensorRef &x = c.in[0], &y = c.out[0];
  const auto sx = broadcast_strides(x.shape, y.shape);
  dispatch_float(c.op, y.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < y.numel(); ++i) y.as<T>()[i] = x.as<T>()[broadcast_offset(i, y.shape, sx)];
  });
}

}  // namespace

void register_reference_elementwise_kernels(KernelTable& t) {
  t.set(OpKind::Full, full);
  t.set(OpKind::Add, add);
  t.set(OpKind::Mul, mul);
  t.set(OpKind::Sum, sum);
  t.set(OpKind::BroadcastTo, broadcast_to);
}

}  // namespace solo
