#include "solo/tensor/tensor.h"

#include <cmath>
#include <cstring>

#include "solo/autograd/autograd.h"
#include "solo/comm/communicator.h"
#include "solo/core/element.h"
#include "solo/core/error.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"
#include "solo/tensor/tensor_impl.h"

namespace solo {

namespace {

TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  SOLO_CHECK(impl != nullptr, "use of an undefined tensor");
  return *impl;
}

// Host bytes of `n` elements of `dtype` from doubles.
std::vector<unsigned char> encode(const std::vector<double>& v, DType dtype) {
  std::vector<unsigned char> bytes(v.size() * dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i)
    store_element(bytes.data() + i * dtype_size(dtype), dtype, v[i]);
  return bytes;
}

double decode(const unsigned char* p, DType dtype) {
  return load_element(p, dtype);
}

// splitmix64: a counter-based generator, so values depend only on (seed, index).
uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

// ---- factories ----
Tensor Tensor::from_data(const void* data, const Shape& shape, DType dtype, Device d) {
  DeviceContext& ctx = device_context(d);
  const ir::TensorType type{shape, dtype};
  auto storage = std::make_shared<Storage>(ctx.backend(), type.bytes());
  ctx.backend().copy_from_host(storage->data(), data, type.bytes());
  return ctx.realized(std::move(storage), type);
}

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape, Device d) {
  SOLO_CHECK(static_cast<int64_t>(v.size()) == shape.numel(), "from_vector: ", v.size(),
             " values do not fill shape ", shape.str());
  return from_data(v.data(), shape, DType::F32, d);
}

Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& shape, Device d) {
  SOLO_CHECK(static_cast<int64_t>(v.size()) == shape.numel(), "from_vector: ", v.size(),
             " values do not fill shape ", shape.str());
  return from_data(v.data(), shape, DType::I64, d);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device d) {
  if (d.type == "meta") return empty(shape, dtype, d);
  const auto bytes = encode(std::vector<double>(static_cast<size_t>(shape.numel()), value), dtype);
  return from_data(bytes.data(), shape, dtype, d);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device d) {
  return full(shape, 0.0, dtype, d);
}

Tensor Tensor::full_pending(const Shape& shape, double value, DType dtype, Device d) {
  DeviceContext& ctx = device_context(d);
  return ctx.wrap(ir::full(ctx.trace().graph, shape, dtype, value), false);
}

Tensor Tensor::from_mapped(MappedBytes bytes, const Shape& shape, DType dtype, Device d) {
  SOLO_CHECK(bytes.bytes.size() == static_cast<size_t>(shape.numel()) * dtype_size(bytes.dtype),
             "from_mapped: ", bytes.bytes.size(), " bytes do not hold ", dtype_name(bytes.dtype),
             shape.str());
  if (d.type == "meta") return empty(shape, dtype, d);
  auto impl = std::make_shared<TensorImpl>();
  impl->type = {shape, dtype};
  impl->device = d;
  impl->mapped = std::make_shared<const MappedBytes>(std::move(bytes));
  return Tensor(impl);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device d) {
  DeviceContext& ctx = device_context(d);
  const ir::TensorType type{shape, dtype};
  return ctx.realized(std::make_shared<Storage>(ctx.backend(), type.bytes()), type);
}

Tensor Tensor::randn(const Shape& shape, double std, uint64_t seed, Device d) {
  if (d.type == "meta") return empty(shape, DType::F32, d);
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  const uint64_t base = splitmix(seed);
  const auto n = static_cast<int64_t>(v.size());
  // Each value depends only on its index, so threads do not change the result.
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {  // Box-Muller on two independent uniforms
    const auto k = static_cast<uint64_t>(i);
    const double u1 = (static_cast<double>(splitmix(base + 2 * k) >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = (static_cast<double>(splitmix(base + 2 * k + 1) >> 11) + 0.5) * 0x1.0p-53;
    v[static_cast<size_t>(i)] =
        static_cast<float>(std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
  }
  return from_data(v.data(), shape, DType::F32, d);
}

// ---- accessors ----
const Shape& Tensor::shape() const {
  return checked(impl_).type.shape;
}
DType Tensor::dtype() const {
  return checked(impl_).type.dtype;
}
const Device& Tensor::device() const {
  return checked(impl_).device;
}
const std::string& Tensor::name() const {
  return checked(impl_).name;
}
Tensor& Tensor::set_name(const std::string& name) {
  checked(impl_).name = name;
  return *this;
}
Tensor& Tensor::as_batch() {
  SOLO_CHECK(checked(impl_).type.shape.rank() >= 1,
             "as_batch: a batch needs a row dimension; this tensor is a scalar");
  impl_->batch = true;
  return *this;
}
bool Tensor::is_realized() const {
  return (checked(impl_).storage || impl_->mapped) && !impl_->trace;
}

// ---- autograd ----
Tensor& Tensor::requires_grad_(bool on) {
  SOLO_CHECK(!on || is_floating(dtype()), "requires_grad_: only float tensors can require grad, ",
             "this one is ", dtype_name(dtype()));
  checked(impl_).requires_grad = on;
  return *this;
}
bool Tensor::requires_grad() const {
  return checked(impl_).requires_grad;
}
Tensor Tensor::grad() const {
  return checked(impl_).grad;
}
void Tensor::set_grad(const Tensor& g) {
  checked(impl_).grad = g;
}
void Tensor::zero_grad() {
  checked(impl_).grad = Tensor();
}

void Tensor::backward() const {
  TensorImpl& self = checked(impl_);
  SOLO_CHECK(self.requires_grad, "backward: this tensor does not require grad (no input of it ",
             "requires grad, or it was computed under a no-grad scope)");
  SOLO_CHECK(self.trace != nullptr, "backward: the tensor was already computed (item(), sync() ",
             "or a step flushed its graph); call backward() before reading its value");
  SOLO_CHECK(self.type.shape.numel() == 1,
             "backward: the loss must have one element, its shape is ", self.type.shape.str());
  DeviceContext& ctx = device_context(self.device);
  Trace& trace = ctx.trace();
  std::vector<ir::ValueId> wrt;
  std::vector<std::shared_ptr<TensorImpl>> leaves;
  for (const auto& [v, leaf] : trace.leaves)
    if (leaf.tensor->requires_grad) {
      wrt.push_back(v);
      leaves.push_back(leaf.tensor);
    }
  std::vector<ir::ValueId> grads = autograd::gradients(trace.graph, self.value, wrt);
  ir::NoGradGuard no_grad;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (grads[i] == ir::kNoValue) continue;
    // The plan decides what a gradient needs across ranks (the data-parallel pass averages
    // the marked ones).
    trace.graph.mark_gradient(grads[i]);
    Tensor g = ctx.wrap(grads[i], false);
    leaves[i]->grad = leaves[i]->grad.defined() ? leaves[i]->grad + g : g;
  }
}

Tensor Tensor::detach() const {
  TensorImpl& self = checked(impl_);
  auto impl = std::make_shared<TensorImpl>(self);
  impl->requires_grad = false;
  impl->grad = Tensor();
  if (impl->trace) {  // a pending value: cut it with a no-grad reshape-free identity
    ir::NoGradGuard no_grad;
    DeviceContext& ctx = device_context(self.device);
    return ctx.wrap(ir::mul_scalar(ctx.trace().graph, ctx.value_of(*this), 1.0), false);
  }
  return Tensor(impl);
}

void Tensor::assign_(const Tensor& value) {
  TensorImpl& self = checked(impl_);
  TensorImpl& v = checked(value.impl_shared());
  SOLO_CHECK(self.type.shape == v.type.shape && self.type.dtype == v.type.dtype,
             "assign_: the new value ", dtype_name(v.type.dtype), v.type.shape.str(),
             " differs from the tensor ", dtype_name(self.type.dtype), self.type.shape.str());
  SOLO_CHECK(self.device == v.device, "assign_: the new value is on another device");
  self.storage = v.storage;
  self.shards = v.shards;
  self.split = v.split;
  self.mapped = v.mapped;
  self.trace = v.trace;
  self.value = v.value;
  if (self.trace) self.trace->pending.push_back(impl_);
}

Tensor Tensor::to(const Device& d) const {
  if (d == device()) return *this;
  Tensor out;
  SOLO_CHECK(device().type != "meta", "to(", d.type, "): a meta tensor has no data to move; ",
             "create it on a real device instead");
  if (d.type == "meta") {
    out = empty(shape(), dtype(), d);
  } else if (impl_->mapped && !impl_->trace) {  // still mapped: nothing to copy yet
    out = from_mapped(*impl_->mapped, shape(), dtype(), d);
  } else {
    std::vector<unsigned char> bytes(checked(impl_).type.bytes());
    copy_to_host(bytes.data());
    out = from_data(bytes.data(), shape(), dtype(), d);
  }
  out.set_name(name());
  if (requires_grad()) out.requires_grad_();
  return out;
}

// ---- data ----
void Tensor::copy_to_host(void* dst) const {
  TensorImpl& self = checked(impl_);
  SOLO_CHECK(self.device.type != "meta", "a tensor on the meta device has no data to read");
  if (self.trace) device_context(self.device).flush();
  if (self.mapped)
    return read_mapped(*self.mapped, 0, self.type.shape.numel(), self.type.dtype, dst);
  SOLO_CHECK(self.storage != nullptr, "tensor has no data");
  // A plan holds it as blocks, or on another pipeline stage: gather them.
  if (self.shards > 1 || self.split.axis >= 0 || self.split.stage >= 0) {
    const std::shared_ptr<Storage> whole = device_context(self.device).gather_blocks(self);
    whole->backend().copy_to_host(dst, whole->data(), self.type.bytes());
    return;
  }
  self.storage->backend().copy_to_host(dst, self.storage->data(), self.type.bytes());
}

std::vector<float> Tensor::to_vector() const {
  std::vector<unsigned char> bytes(checked(impl_).type.bytes());
  copy_to_host(bytes.data());
  std::vector<float> out(static_cast<size_t>(numel()));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<float>(decode(bytes.data() + i * dtype_size(dtype()), dtype()));
  return out;
}

std::vector<int64_t> Tensor::to_int_vector() const {
  std::vector<unsigned char> bytes(checked(impl_).type.bytes());
  copy_to_host(bytes.data());
  std::vector<int64_t> out(static_cast<size_t>(numel()));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<int64_t>(decode(bytes.data() + i * dtype_size(dtype()), dtype()));
  return out;
}

double Tensor::item() const {
  SOLO_CHECK(numel() == 1, "item: the tensor has ", numel(), " elements, not one (shape ",
             shape().str(), ")");
  std::vector<unsigned char> bytes(dtype_size(dtype()));
  copy_to_host(bytes.data());
  return decode(bytes.data(), dtype());
}

void sync(const Device& d) {
  device_context(d).flush();
}
size_t last_flush_peak_bytes(const Device& d) {
  return device_context(d).last_peak_bytes();
}
size_t device_memory_peak_bytes(const Device& d) {
  return device_context(d).backend().peak_bytes();
}
void set_device_memory_limit(const Device& d, size_t bytes) {
  device_context(d).backend().set_memory_limit(bytes);
}
void set_data_parallel(const Device& d, comm::Communicator* c) {
  device_context(d).set_data_parallel(c);
}
void set_plan_flavor(const Device& d, const PlanFlavor& flavor) {
  device_context(d).set_plan_flavor(flavor);
}
void plan_all_flavors(const Device& d, std::vector<PlanFlavor> flavors) {
  device_context(d).plan_all_flavors(std::move(flavors));
}
int data_parallel_size(const Device& d) {
  const comm::Communicator* c = device_context(d).data_parallel();
  return c ? c->size() : 1;
}
int64_t plan_cache_hits(const Device& d) {
  return device_context(d).plan_cache_hits();
}

int64_t replayed_flushes(const Device& d) {
  return device_context(d).replayed_flushes();
}
std::shared_ptr<const ir::Graph> last_flush_graph(const Device& d) {
  return device_context(d).last_graph();
}
uint64_t last_flush_graph_hash(const Device& d) {
  return device_context(d).last_graph_hash();
}
const ir::Graph& pending_graph(const Device& d) {
  return device_context(d).trace().graph;
}

}  // namespace solo
