#include "solo/runtime/executor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>

#include "solo/core/error.h"

namespace solo::runtime {

using ir::ValueId;

namespace {

// The arena for one run, returned to the backend when the run ends (also on error).
class Arena {
 public:
  Arena(Backend& b, size_t bytes) : backend_(b), bytes_(bytes), base_(b.allocate(bytes)) {}
  ~Arena() { backend_.deallocate(base_, bytes_); }
  char* base() const { return static_cast<char*>(base_); }

 private:
  Backend& backend_;
  size_t bytes_;
  void* base_;
};

}  // namespace

RunResult Executor::run(const ir::Graph& g, const std::vector<ValueId>& outputs,
                        const std::unordered_map<ValueId, const void*>& inputs) {
  return run(g, plan_memory(g, outputs), inputs);
}

RunResult Executor::run(const ir::Graph& g, const MemoryPlan& plan,
                        const std::unordered_map<ValueId, const void*>& inputs) {
  const size_t in_use_before = backend_.bytes_in_use();
  backend_.reset_peak();

  RunResult result;
  std::vector<void*> data(static_cast<size_t>(g.num_values()), nullptr);
  Arena arena(backend_, plan.arena_bytes);
  for (ValueId v : plan.outputs) {
    result.outputs.push_back(std::make_shared<Storage>(backend_, g.type(v).bytes()));
    data[static_cast<size_t>(v)] = result.outputs.back()->data();
  }
  for (int v = 0; v < g.num_values(); ++v)
    if (plan.placement[static_cast<size_t>(v)] == Placement::Arena && arena.base())
      data[static_cast<size_t>(v)] = arena.base() + plan.offset[static_cast<size_t>(v)];

  std::vector<TensorRef> in_refs, out_refs;
  for (ir::NodeId id : plan.schedule) {
    const ir::Node& node = g.node(id);
    const ValueId out0 = node.outputs.empty() ? ir::kNoValue : node.outputs[0];
    // Leaves and views need no kernel; if they are requested outputs, copy their bytes.
    if (node.op == OpKind::Input || node.op == OpKind::Reshape) {
      const void* src = nullptr;
      if (node.op == OpKind::Input) {
        auto it = inputs.find(out0);
        SOLO_CHECK(it != inputs.end(), "graph input '", node.name, "' (v", out0,
                   ") has no data bound to it");
        src = it->second;
      } else {
        src = data[static_cast<size_t>(node.inputs[0])];
      }
      const auto o = static_cast<size_t>(out0);
      if (plan.placement[o] == Placement::Output)
        backend_.copy(data[o], src, g.type(out0).bytes());
      else
        data[o] = const_cast<void*>(src);
      continue;
    }
    in_refs.clear();
    out_refs.clear();
    if (node.op == OpKind::AllReduce) {
      const ValueId in = node.inputs[0];
      run_collective(node, {data[static_cast<size_t>(in)], g.shape(in), g.dtype(in)},
                     {data[static_cast<size_t>(out0)], g.shape(out0), g.dtype(out0)});
      continue;
    }
    for (ValueId v : node.inputs)
      in_refs.push_back({data[static_cast<size_t>(v)], g.shape(v), g.dtype(v)});
    for (ValueId v : node.outputs)
      out_refs.push_back({data[static_cast<size_t>(v)], g.shape(v), g.dtype(v)});
    try {
      if (profile_) backend_.synchronize();  // attribute queued work to the op that queued it
      const auto start = std::chrono::steady_clock::now();
      backend_.run(KernelCall{node.op, node.attrs, in_refs, out_refs});
      if (profile_) {
        backend_.synchronize();
        const auto k = static_cast<size_t>(node.op);
        profile_->seconds[k] +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        ++profile_->calls[k];
      }
    } catch (const Error& e) {
      SOLO_FAIL(e.what(), " [at ", g.describe(id), "]");
    }
  }
  result.peak_bytes = backend_.peak_bytes() - in_use_before;
  return result;
}

void Executor::run_collective(const ir::Node& node, const TensorRef& in, const TensorRef& out) {
  // In place on the output. On a device this copy is queued on the backend's stream; a device
  // communicator orders its collective after that stream's queued work.
  backend_.copy(out.data, in.data, in.bytes());
  if (!comm_ || comm_->size() == 1 || !backend_.holds_data()) return;
  const bool host_buffers =
      std::string(backend_.name()) == "cpu" || std::string(backend_.name()) == "reference";
  SOLO_CHECK(host_buffers || comm_->device_memory(), "AllReduce on backend '", backend_.name(),
             "' needs a device communicator (NCCL), but communicator '", comm_->name(),
             "' works on host memory; build Solo with NCCL or train on the cpu backend");
  SOLO_CHECK(!host_buffers || !comm_->device_memory(), "AllReduce on backend '", backend_.name(),
             "' holds host memory, but communicator '", comm_->name(),
             "' works on device memory; attach a host communicator (MPI) to this device");
  comm_->all_reduce(out.data, static_cast<size_t>(out.numel()), out.dtype,
                    node.attrs.i("average") != 0);
}

std::string OpProfile::report() const {
  std::vector<size_t> order(kNumOps);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return seconds[a] > seconds[b]; });
  const double total = std::accumulate(seconds.begin(), seconds.end(), 0.0);
  std::string out;
  char line[160];
  for (size_t k : order) {
    if (calls[k] == 0) continue;
    std::snprintf(line, sizeof line, "%-22s %9.3f s %5.1f%% %8lld calls\n",
                  op_name(static_cast<OpKind>(k)), seconds[k], 100.0 * seconds[k] / total,
                  static_cast<long long>(calls[k]));
    out += line;
  }
  return out;
}

}  // namespace solo::runtime
