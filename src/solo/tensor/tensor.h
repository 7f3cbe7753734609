// The user-facing lazy tensor. Ops on tensors append nodes to the pending graph of their
// device; nothing runs until a flush (item(), to_vector(), sync(), or an optimizer step).
// A flush computes every pending tensor the program still holds, gives each its storage,
// and starts a new graph. Tensors are immutable values; assign_() rebinds a tensor (this is
// how optimizers update parameters) without mutating storage others may hold.
#pragma once
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "solo/core/dtype.h"
#include "solo/core/rope_scaling.h"
#include "solo/core/shape.h"
#include "solo/ir/graph.h"
#include "solo/tensor/plan_cache.h"

namespace solo {

namespace comm {
class Communicator;
}
class Storage;
class DeviceContext;
struct TensorImpl;

// "cpu", "meta" (shapes only), "reference" (naive kernels, for tests).
struct Device {
  std::string type = "cpu";
  bool operator==(const Device& o) const { return type == o.type; }
};
inline Device cpu_device() {
  return Device{"cpu"};
}
inline Device meta_device() {
  return Device{"meta"};
}

// Bytes of a tensor in a memory-mapped file (a checkpoint), kept mapped by `owner`.
struct MappedBytes {
  std::span<const std::byte> bytes;  // the elements in `dtype`, row-major, maybe unaligned
  DType dtype = DType::F32;
  std::shared_ptr<const void> owner;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (realized tensors) ----
  static Tensor from_data(const void* data, const Shape& shape, DType dtype, Device d = {});
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape, Device d = {});
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape, Device d = {});
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device d = {});
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device d = {});
  // Normal(0, std) values from a counter-based generator: the same seed gives the same
  // values on every machine and device.
  static Tensor randn(const Shape& shape, double std, uint64_t seed, Device d = {});
  // A pending constant: nothing is allocated until a flush, and the plan decides where its
  // blocks live (a ZeRO plan creates optimizer states as blocks, never whole).
  static Tensor full_pending(const Shape& shape, double value, DType dtype, Device d);
  // A tensor whose values are still the mapped bytes (converted to `dtype` when read). The
  // device holds nothing until a flush reads it, and then only what the plan needs there
  // (a ZeRO-3 rank's block, or the whole tensor); it keeps that from then on.
  static Tensor from_mapped(MappedBytes bytes, const Shape& shape, DType dtype, Device d);
  // A tensor with no data on any device (for tracing shapes); equals zeros on meta.
  static Tensor empty(const Shape& shape, DType dtype, Device d);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  DType dtype() const;
  int64_t numel() const { return shape().numel(); }
  const Device& device() const;
  const std::string& name() const;
  Tensor& set_name(const std::string& name);
  // Marks the tensor as rows of the training batch (dimension 0): a plan may give each
  // data-parallel rank its own rows, and a scalar computed from them (the loss) is then the
  // mean over the ranks' rows when read. A DataLoader's batches are marked so.
  Tensor& as_batch();

  // ---- autograd ----
  Tensor& requires_grad_(bool on = true);
  bool requires_grad() const;
  // The accumulated gradient (undefined until backward reaches this tensor).
  Tensor grad() const;
  void set_grad(const Tensor& g);
  void zero_grad();
  // Appends the backward graph of this scalar and accumulates into .grad() of every leaf
  // that requires grad. Must be called before the tensor is flushed.
  void backward() const;
  // The same value, cut from the autograd graph.
  Tensor detach() const;

  // ---- data (these flush) ----
  double item() const;
  std::vector<float> to_vector() const;        // any float dtype, converted to f32
  std::vector<int64_t> to_int_vector() const;  // integer dtypes
  void copy_to_host(void* dst) const;          // raw bytes in this tensor's dtype
  bool is_realized() const;

  // A copy on another device (flushes if pending). To meta: shape and dtype only.
  Tensor to(const Device& d) const;

  // Rebinds this handle's value to `value` (same shape and dtype); every copy of this
  // Tensor sees the new value. Used for parameter and optimizer-state updates.
  void assign_(const Tensor& value);

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_shared() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Computes every pending tensor of the device.
void sync(const Device& d = {});

// Bytes of device memory that the last flush allocated at its peak (arena + outputs).
size_t last_flush_peak_bytes(const Device& d = {});
// Bytes of the device's memory held at the peak of the last flush, everything included
// (parameters, optimizer state, the step's arena and outputs); what `solo smi` shows.
size_t device_memory_peak_bytes(const Device& d = {});
// Allocations on the device beyond `bytes` (0: unlimited) are errors (Backend::set_memory_limit).
void set_device_memory_limit(const Device& d, size_t bytes);
// Data parallelism: with a communicator of N > 1 ranks attached to a device, backward()
// averages the gradients over the ranks (bucketed all-reduces appended to the step graph,
// as DDP does during backward), so every rank applies the same update. solo::Session
// attaches its communicator; pass nullptr to detach. On a GPU device `c` (MPI) bootstraps an
// NCCL communicator that runs the all-reduces on device buffers; attaching and detaching are
// then collective over the ranks of `c`.
void set_data_parallel(const Device& d, comm::Communicator* c);
int data_parallel_size(const Device& d = {});
// The flavor the device's plans are for (solo::Session sets it from the inventory): the
// planner spreads the step over its devices and hosts, and caches its choice per flavor on
// disk (plan_cache.h), so a second run compiles only the cached plan.
void set_plan_flavor(const Device& d, const PlanFlavor& flavor);
// A dry run (`solo plan --all-flavors -- PROGRAM`): at the program's first training step the
// planner plans that step for each flavor, writes each choice to the plan cache, prints one
// line per flavor, and the process exits 0 before the step runs.
void plan_all_flavors(const Device& d, std::vector<PlanFlavor> flavors);

// Structural hash of the graph the last flush ran (equal for steps of the same program).
uint64_t last_flush_graph_hash(const Device& d = {});
// How many flushes reused a cached memory plan (same graph hash and outputs).
int64_t plan_cache_hits(const Device& d = {});
// How many flushes replayed a recording of an earlier run (CUDA graphs; SOLO_CUDA_GRAPHS=0
// turns them off).
int64_t replayed_flushes(const Device& d = {});
// The graph the last flush on the device ran (null before the first): what a cost model
// estimates a step from.
std::shared_ptr<const ir::Graph> last_flush_graph(const Device& d = {});
// The pending graph of a device (for inspection: hashes, dumps, tracing tests).
const ir::Graph& pending_graph(const Device& d = {});

using NoGradGuard = ir::NoGradGuard;

// Mixed precision: while an AutocastGuard(BF16) lives on this thread, matmul, linear and
// attention cast their f32 operands to bf16, compute there (fp32 accumulation), and return
// f32. Parameters, gradients and optimizer states stay f32 (master weights); the casts'
// gradients flow back to them in f32.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType compute = DType::BF16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType previous_;
};
DType autocast_dtype();  // F32 when autocast is off
using ScopeGuard = ir::ScopeGuard;

// ---- ops (see ir/ops.h for semantics) ----
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator-(const Tensor& a);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
Tensor pow(const Tensor& x, double p);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor silu(const Tensor& x);
// silu(gate) * up in one fused op (the Llama MLP's gate).
Tensor swiglu(const Tensor& gate, const Tensor& up);
Tensor gelu(const Tensor& x, bool tanh = false);
Tensor cast(const Tensor& x, DType to);
Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor permute(const Tensor& x, std::vector<int64_t> perm);
Tensor transpose(const Tensor& x, int d0, int d1);
Tensor slice(const Tensor& x, int axis, int64_t start, int64_t end);
Tensor concat(const std::vector<Tensor>& xs, int axis);
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = {});
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor softmax(const Tensor& x, int axis = -1);
Tensor rms_norm(const Tensor& x, const Tensor& w, double eps);
Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps);
Tensor rope(const Tensor& x, double theta);
Tensor rope(const Tensor& x, const RopeScaling& scaling);
// window > 0 (causal only): each query sees the last `window` keys, itself included.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_mask = {}, bool causal = true,
                                    int64_t window = 0);
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);
// Fused AdamW step -> {p', m', v'} (see ir::adamw_update).
std::vector<Tensor> adamw_update(const Tensor& p, const Tensor& grad, const Tensor& m,
                                 const Tensor& v, const Tensor& lr, const Tensor& bias1,
                                 const Tensor& bias2, double beta1, double beta2, double eps,
                                 double weight_decay);

}  // namespace solo
