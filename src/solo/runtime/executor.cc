#include "solo/runtime/executor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "solo/core/element.h"
#include "solo/core/error.h"
#include "solo/core/op_info.h"
#include "solo/ir/ops.h"

namespace solo::runtime {

using ir::ValueId;

RunResult Executor::run(const ir::Graph& g, const std::vector<ValueId>& outputs,
                        const std::unordered_map<ValueId, const void*>& inputs) {
  return run(g, plan_memory(g, outputs, {}, comm_ && comm_->asynchronous()), inputs);
}

RunResult Executor::run(const ir::Graph& g, const MemoryPlan& plan,
                        const std::unordered_map<ValueId, const void*>& inputs,
                        const std::unordered_map<ValueId, std::shared_ptr<Storage>>& donated,
                        ReplayState* replay) {
  // Where each scheduled Input node's data is.
  std::vector<const void*> bound(static_cast<size_t>(g.num_values()), nullptr);
  for (ir::NodeId id : plan.schedule) {
    const ir::Node& node = g.node(id);
    if (node.op != OpKind::Input) continue;
    auto it = inputs.find(node.outputs[0]);
    SOLO_CHECK(it != inputs.end(), "graph input '", node.name, "' (v", node.outputs[0],
               ") has no data bound to it");
    bound[static_cast<size_t>(node.outputs[0])] = it->second;
  }
  for (ValueId v : plan.outputs)
    if (plan.placement[static_cast<size_t>(v)] == Placement::Donated) {
      const ValueId d = plan.donor[static_cast<size_t>(v)];
      auto it = donated.find(d);
      SOLO_CHECK(it != donated.end() && it->second->data() == bound[static_cast<size_t>(d)],
                 "the memory plan reuses input v", d, " but its storage was not donated");
    }

  // A plan with collectives across ranks is never recorded: whether a collective is captured
  // must be the same on every rank (NCCL), while recording and re-recording are decided from
  // this rank's own addresses and errors.
  const bool collectives =
      std::any_of(plan.collective_groups.begin(), plan.collective_groups.end(), [&](int64_t group) {
        const comm::Communicator* c = group_of(group);
        return c && c->size() > 1;
      });
  const bool may_replay = replay && !replay->disabled && !profile_ && !check_finite_ &&
                          backend_.can_record() && !collectives;
  RunResult result;
  if (!(may_replay && replay->runs > 0 && replayed(g, plan, bound, donated, *replay, result)))
    result = run_eagerly(g, plan, bound, donated);
  if (replay) {
    replay->previous = std::move(bound);
    ++replay->runs;
  }
  return result;
}

RunResult Executor::run_eagerly(
    const ir::Graph& g, const MemoryPlan& plan, const std::vector<const void*>& bound,
    const std::unordered_map<ValueId, std::shared_ptr<Storage>>& donated) {
  const size_t in_use_before = backend_.bytes_in_use();
  backend_.reset_peak();
  RunResult result;
  std::vector<void*> data(static_cast<size_t>(g.num_values()), nullptr);
  const Storage arena(backend_, plan.arena_bytes);  // returned when the run ends, also on error
  for (ValueId v : plan.outputs) {
    if (plan.placement[static_cast<size_t>(v)] == Placement::Donated)
      result.outputs.push_back(donated.at(plan.donor[static_cast<size_t>(v)]));
    else
      result.outputs.push_back(std::make_shared<Storage>(backend_, g.type(v).bytes()));
    data[static_cast<size_t>(v)] = result.outputs.back()->data();
  }
  for (int v = 0; v < g.num_values(); ++v)
    if (plan.placement[static_cast<size_t>(v)] == Placement::Arena && arena.data())
      data[static_cast<size_t>(v)] =
          static_cast<char*>(arena.data()) + plan.offset[static_cast<size_t>(v)];
  launch(g, plan, bound, data);
  result.peak_bytes = backend_.peak_bytes() - in_use_before;
  return result;
}

bool Executor::replayed(const ir::Graph& g, const MemoryPlan& plan,
                        const std::vector<const void*>& bound,
                        const std::unordered_map<ValueId, std::shared_ptr<Storage>>& donated,
                        ReplayState& state, RunResult& result) {
  bool in_place = state.recording != nullptr;
  for (size_t v = 0; in_place && v < state.direct.size(); ++v)
    in_place = !state.direct[v] || state.direct[v] == bound[v];
  if (!in_place) {
    if (state.recordings >= ReplayState::kMaxRecordings || !record(g, plan, bound, state)) {
      state.disabled = true;  // inputs keep moving, or the work cannot be recorded
      state.recording.reset();
      state.arena.reset();
      state.slots.reset();
      return false;
    }
  }
  char* slots = static_cast<char*>(state.slots->data());
  for (size_t v = 0; v < bound.size(); ++v)
    if (bound[v] && state.slot[v] >= 0)
      backend_.copy(slots + state.slot[v], bound[v], g.type(static_cast<ValueId>(v)).bytes());
  state.recording->replay();
  size_t output_bytes = 0;
  for (ValueId v : plan.outputs) {
    const auto o = static_cast<size_t>(v);
    if (plan.placement[o] == Placement::Donated) {
      result.outputs.push_back(donated.at(plan.donor[o]));
    } else {
      result.outputs.push_back(std::make_shared<Storage>(backend_, g.type(v).bytes()));
      backend_.copy(result.outputs.back()->data(), slots + state.slot[o], g.type(v).bytes());
      output_bytes += g.type(v).bytes();
    }
  }
  result.peak_bytes = state.arena->bytes() + state.slots->bytes() + output_bytes;
  result.replayed = true;
  ++state.replays;
  return true;
}

bool Executor::record(const ir::Graph& g, const MemoryPlan& plan,
                      const std::vector<const void*>& bound, ReplayState& state) {
  const auto nv = static_cast<size_t>(g.num_values());
  std::vector<bool> donor(nv, false);
  for (ValueId v : plan.outputs)
    if (plan.placement[static_cast<size_t>(v)] == Placement::Donated)
      donor[static_cast<size_t>(plan.donor[static_cast<size_t>(v)])] = true;
  // Slots: inputs that moved since the last run or are small (never a donated one: its
  // output is written over it), then every output not written over a donated input.
  std::vector<int64_t> slot(nv, -1);
  size_t slot_bytes = 0;
  auto add_slot = [&](size_t v) {
    slot[v] = static_cast<int64_t>(slot_bytes);
    slot_bytes += align_up(g.type(static_cast<ValueId>(v)).bytes());
  };
  for (size_t v = 0; v < nv; ++v) {
    if (!bound[v] || donor[v]) continue;
    const bool moved = state.previous.size() != nv || state.previous[v] != bound[v];
    if (moved || g.type(static_cast<ValueId>(v)).bytes() <= ReplayState::kSmallInputBytes)
      add_slot(v);
  }
  for (ValueId v : plan.outputs)
    if (plan.placement[static_cast<size_t>(v)] == Placement::Output)
      add_slot(static_cast<size_t>(v));
  if (slot_bytes > ReplayState::kMaxSlotBytes) return false;

  state.recording.reset();
  if (!state.arena || state.arena->bytes() != plan.arena_bytes)
    state.arena = std::make_unique<Storage>(backend_, plan.arena_bytes);
  if (!state.slots || state.slots->bytes() != slot_bytes)
    state.slots = std::make_unique<Storage>(backend_, slot_bytes);
  char* arena = static_cast<char*>(state.arena->data());
  char* slots = static_cast<char*>(state.slots->data());

  // The addresses the recording will read and write.
  std::vector<const void*> source(nv, nullptr);
  std::vector<void*> data(nv, nullptr);
  for (size_t v = 0; v < nv; ++v) {
    if (bound[v]) source[v] = slot[v] >= 0 ? slots + slot[v] : bound[v];
    switch (plan.placement[v]) {
      case Placement::Arena:
        data[v] = arena + plan.offset[v];
        break;
      case Placement::Output:
        data[v] = slots + slot[v];
        break;
      case Placement::Donated:
        data[v] = const_cast<void*>(bound[static_cast<size_t>(plan.donor[v])]);
        break;
      default:
        break;
    }
  }
  backend_.begin_recording();
  try {
    launch(g, plan, source, data);
  } catch (const Error&) {
    try {
      backend_.end_recording();
    } catch (const Error&) {
    }
    return false;  // run eagerly: a real error shows up there
  }
  try {
    state.recording = backend_.end_recording();
  } catch (const Error&) {
    return false;
  }
  state.direct.assign(nv, nullptr);
  for (size_t v = 0; v < nv; ++v)
    if (bound[v] && slot[v] < 0) state.direct[v] = bound[v];
  state.slot = std::move(slot);
  ++state.recordings;
  return true;
}

void Executor::launch(const ir::Graph& g, const MemoryPlan& plan,
                      const std::vector<const void*>& source, std::vector<void*>& data) {
  std::vector<TensorRef> in_refs, out_refs;
  // Collectives overlap later nodes only where the plan kept their buffers for it.
  const bool overlap = plan.async_collectives && comm_ && comm_->asynchronous();
  // Per step of a started collective: its communicator and ticket (Communicator::wait_for).
  std::vector<std::pair<comm::Communicator*, size_t>> started(overlap ? plan.schedule.size() : 0);
  // On an error, later work (and the reuse of this run's buffers once they are freed) must
  // still come after the collectives already started.
  struct JoinStarted {
    std::vector<std::pair<comm::Communicator*, size_t>>& started;
    ~JoinStarted() {
      for (auto& [comm, ticket] : started) {
        if (!comm) continue;
        try {
          comm->wait_for(ticket);
        } catch (const Error&) {  // the error being thrown already says what went wrong
        }
        comm = nullptr;
      }
    }
  } join{started};
  for (size_t step = 0; step < plan.schedule.size(); ++step) {
    const ir::NodeId id = plan.schedule[step];
    const ir::Node& node = g.node(id);
    if (overlap)
      for (int s : plan.wait_before[step]) {
        auto& [comm, ticket] = started[static_cast<size_t>(s)];
        if (comm) comm->wait_for(ticket);
        comm = nullptr;
      }
    const ValueId out0 = node.outputs.empty() ? ir::kNoValue : node.outputs[0];
    // Leaves and views need no kernel; if they are requested outputs, copy their bytes.
    const OpInfo& info = op_info(node.op);
    if (node.op == OpKind::Input || info.view) {
      const auto o = static_cast<size_t>(out0);
      const void* src =
          node.op == OpKind::Input ? source[o] : data[static_cast<size_t>(node.inputs[0])];
      if (plan.placement[o] == Placement::Output)
        backend_.copy(data[o], src, g.type(out0).bytes());
      else
        data[o] = const_cast<void*>(src);
      continue;
    }
    in_refs.clear();
    out_refs.clear();
    if (info.collective) {
      const bool start = overlap && starts_asynchronously(node);
      if (profile_) backend_.synchronize();
      const auto began = std::chrono::steady_clock::now();
      const size_t ticket = run_collective(g, node, data, start);
      if (profile_) {  // a started collective counts its launch only
        const auto k = static_cast<size_t>(node.op);
        profile_->seconds[k] +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
        ++profile_->calls[k];
      }
      if (start && ticket != 0) started[step] = {group_of(node.attrs.i_or("group", 0)), ticket};
      continue;
    }
    for (ValueId v : node.inputs)
      in_refs.push_back({data[static_cast<size_t>(v)], g.shape(v), g.dtype(v)});
    for (ValueId v : node.outputs)
      out_refs.push_back({data[static_cast<size_t>(v)], g.shape(v), g.dtype(v)});
    try {
      if (profile_) backend_.synchronize();  // attribute queued work to the op that queued it
      const auto start = std::chrono::steady_clock::now();
      if (info.group_rank) {
        const Attrs attrs = with_group_rank(node);
        backend_.run(KernelCall{node.op, attrs, in_refs, out_refs});
      } else {
        backend_.run(KernelCall{node.op, node.attrs, in_refs, out_refs});
      }
      if (check_finite_) check_finite(g, node, data);
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
  for (auto& [comm, ticket] : started) {
    if (comm) comm->wait_for(ticket);
    comm = nullptr;
  }
}

void Executor::check_finite(const ir::Graph& g, const ir::Node& node,
                            const std::vector<void*>& data) const {
  if (!backend_.holds_data()) return;
  for (ValueId v : node.outputs) {
    const ir::TensorType& t = g.type(v);
    if (!is_floating(t.dtype)) continue;
    std::vector<unsigned char> host(t.bytes());
    backend_.copy_to_host(host.data(), data[static_cast<size_t>(v)], host.size());
    for (int64_t i = 0; i < t.shape.numel(); ++i) {
      const double x =
          load_element(host.data() + static_cast<size_t>(i) * dtype_size(t.dtype), t.dtype);
      SOLO_CHECK(std::isfinite(x), "SOLO_CHECK_FINITE: output ", v, " ", dtype_name(t.dtype),
                 t.shape.str(), " of ", op_name(node.op), " holds ", x, " at element ", i,
                 ": the first non-finite value of this run");
    }
  }
}

Attrs Executor::with_group_rank(const ir::Node& node) const {
  const int64_t group = node.attrs.i_or("group", 0);
  const comm::Communicator* comm = group_of(group);
  const int64_t ranks = node.attrs.i_or("ranks", 1), size = comm ? comm->size() : 1;
  // The meta backend runs no kernel: any number of ranks is traced.
  SOLO_CHECK(size == ranks || !backend_.holds_data(), op_name(node.op), " was built for ", ranks,
             " ranks, but communicator group ", group, " has ", size,
             "; build the graph for the mesh it runs on");
  Attrs attrs = node.attrs;
  attrs.set("rank", static_cast<int64_t>(comm ? comm->rank() : 0));
  return attrs;
}

comm::Communicator* Executor::group_of(int64_t group) const {
  return static_cast<size_t>(group) < groups_.size() ? groups_[static_cast<size_t>(group)]
                                                     : nullptr;
}

size_t Executor::run_collective(const ir::Graph& g, const ir::Node& node,
                                const std::vector<void*>& data, bool start) {
  if (!backend_.holds_data()) return 0;  // meta: shapes only, for any number of ranks
  const char* op = op_name(node.op);
  const int64_t group = node.attrs.i_or("group", 0);
  comm::Communicator* comm = group_of(group);
  SOLO_CHECK(comm || group == 0, op, " runs on communicator group ", group,
             ", which the executor was not given (it has ", groups_.size(),
             "); pass one communicator per mesh axis");
  if (node.op == OpKind::Send || node.op == OpKind::Recv) {
    run_point_to_point(g, node, data, comm, group);
    return 0;
  }
  const int64_t ranks = node.op == OpKind::AllReduce ? 0 : node.attrs.i("ranks");
  if (ranks > 0) {
    const int size = comm ? comm->size() : 1;
    SOLO_CHECK(size == ranks, op, " was built for ", ranks, " ranks, but communicator group ",
               group, comm ? " has " : " is not given to the executor: ",
               comm ? std::to_string(size) + " ranks" : "it runs as 1 rank",
               "; build the graph for the mesh it runs on");
  }
  auto buffer = [&](ValueId v) { return data[static_cast<size_t>(v)]; };
  if (node.op == OpKind::LocalShard) {  // this rank's block: a copy, no communication
    const size_t bytes = g.type(node.outputs[0]).bytes();
    const size_t rank = comm ? static_cast<size_t>(comm->rank()) : 0;
    backend_.copy(buffer(node.outputs[0]),
                  static_cast<const char*>(buffer(node.inputs[0])) + rank * bytes, bytes);
    return 0;
  }
  if (!comm || comm->size() == 1) {  // one rank: every collective is the identity
    for (size_t k = 0; k < node.inputs.size(); ++k)
      backend_.copy(buffer(node.outputs[k]), buffer(node.inputs[k]),
                    g.type(node.inputs[k]).bytes());
    return 0;
  }
  check_buffers(*comm, node.op);
  // From each input straight into its output (no copy of ours); a device communicator orders
  // its collective after the work already queued on the backend's stream.
  const ValueId in = node.inputs[0], out = node.outputs[0];
  switch (node.op) {
    case OpKind::AllGather: {  // rank r's x lands at block r of the output
      const auto count = static_cast<size_t>(g.shape(in).numel());
      if (start) return comm->start_all_gather(buffer(in), buffer(out), count, g.dtype(in));
      comm->all_gather(buffer(in), buffer(out), count, g.dtype(in));
      return 0;
    }
    case OpKind::ReduceScatter:
      comm->reduce_scatter_sum(buffer(in), buffer(out), static_cast<size_t>(g.shape(out).numel()),
                               g.dtype(out));
      return 0;
    default:
      break;
  }
  std::vector<comm::ReduceBuffer> buffers;  // a bucket of gradients: one group
  for (size_t k = 0; k < node.inputs.size(); ++k)
    buffers.push_back({buffer(node.inputs[k]), buffer(node.outputs[k]),
                       static_cast<size_t>(g.shape(node.outputs[k]).numel()),
                       g.dtype(node.outputs[k])});
  const bool average = node.attrs.i("average") != 0;
  if (start) return comm->start_all_reduce_group(buffers, average);
  comm->all_reduce_group(buffers, average);
  return 0;
}

void Executor::run_point_to_point(const ir::Graph& g, const ir::Node& node,
                                  const std::vector<void*>& data, comm::Communicator* comm,
                                  int64_t group) {
  const bool sending = node.op == OpKind::Send;
  const ValueId v = sending ? node.inputs[0] : node.outputs[0];
  const int64_t peer = node.attrs.i("peer");
  SOLO_CHECK(comm && peer < comm->size() && peer != comm->rank(), op_name(node.op), " with peer ",
             peer, ": communicator group ", group, " has ", comm ? comm->size() : 1,
             " rank(s) and this is rank ", comm ? comm->rank() : 0,
             "; a peer is another rank of the group");
  check_buffers(*comm, node.op);
  void* buffer = data[static_cast<size_t>(v)];
  const auto tag = static_cast<int>(node.attrs.i("tag"));
  if (sending)
    comm->send(buffer, g.type(v).bytes(), static_cast<int>(peer), tag);
  else
    comm->recv(buffer, g.type(v).bytes(), static_cast<int>(peer), tag);
}

void Executor::check_buffers(const comm::Communicator& comm, OpKind op) const {
  const bool host_buffers = backend_.host_memory();
  SOLO_CHECK(host_buffers || comm.device_memory(), op_name(op), " on backend '", backend_.name(),
             "' needs a device communicator (NCCL), but communicator '", comm.name(),
             "' works on host memory; build Solo with NCCL or train on the cpu backend");
  SOLO_CHECK(!host_buffers || !comm.device_memory(), op_name(op), " on backend '", backend_.name(),
             "' holds host memory, but communicator '", comm.name(),
             "' works on device memory; attach a host communicator (MPI) to this device");
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
