#include "solo/runtime/memory_plan.h"

#include <algorithm>

#include "solo/core/error.h"
#include "solo/core/op_info.h"
#include "solo/ir/ops.h"

namespace solo::runtime {

using ir::NodeId;
using ir::ValueId;

namespace {

// Marks the nodes that the requested outputs depend on, and the side-effect nodes (sends)
// whose inputs those nodes compute. A side-effect node that would need more work is left out:
// the caller asks for its token to run it (ir::send), so that evaluating one value never
// runs other parts of the graph, nor needs their inputs bound.
std::vector<bool> needed_nodes(const ir::Graph& g, const std::vector<ValueId>& outputs) {
  std::vector<bool> needed(static_cast<size_t>(g.num_nodes()), false);
  std::vector<NodeId> stack;
  for (ValueId v : outputs) stack.push_back(g.value(v).producer);
  while (!stack.empty()) {
    const NodeId n = stack.back();
    stack.pop_back();
    if (needed[static_cast<size_t>(n)]) continue;
    needed[static_cast<size_t>(n)] = true;
    for (ValueId in : g.node(n).inputs) stack.push_back(g.value(in).producer);
  }
  // One pass in node order: nodes are in topological order.
  for (NodeId n = 0; n < g.num_nodes(); ++n) {
    const ir::Node& node = g.node(n);
    if (needed[static_cast<size_t>(n)] || !op_info(node.op).side_effect) continue;
    needed[static_cast<size_t>(n)] =
        std::all_of(node.inputs.begin(), node.inputs.end(),
                    [&](ValueId in) { return needed[static_cast<size_t>(g.value(in).producer)]; });
  }
  return needed;
}

// True when output `out` may be written into the buffer of input `in`: `in` is dead before
// `out` is computed, or the producer of `out` reads `in` last, only at the position it
// updates in place.
bool can_take_buffer(const ir::Graph& g, const MemoryPlan& p, ValueId out, ValueId in) {
  const auto i = static_cast<size_t>(in);
  const int def = p.first_use[static_cast<size_t>(out)];
  if (p.last_use[i] < def) return true;
  if (p.last_use[i] > def) return false;
  const ir::Node& node = g.producer(out);
  const auto& outs = node.outputs;
  const int k = static_cast<int>(std::find(outs.begin(), outs.end(), out) - outs.begin());
  const int src = op_info(node.op).inplace_input(k);
  if (src < 0) return false;
  for (size_t pos = 0; pos < node.inputs.size(); ++pos) {
    const bool reads_in = p.root[static_cast<size_t>(node.inputs[pos])] == in;
    if (reads_in != (static_cast<int>(pos) == src)) return false;
  }
  return true;
}

// Gives requested outputs the buffers of donated inputs of the same size (first fit, in
// schedule order).
void donate_inputs(const ir::Graph& g, const std::vector<ValueId>& donatable, MemoryPlan& p) {
  std::vector<ValueId> free_inputs;
  for (ValueId d : donatable) {
    SOLO_CHECK(d >= 0 && d < g.num_values() && g.producer(d).op == OpKind::Input,
               "memory plan: donated value v", d, " is not a graph input");
    // An input that is itself requested is copied out, so its buffer stays the caller's.
    if (p.placement[static_cast<size_t>(d)] == Placement::Input) free_inputs.push_back(d);
  }
  std::vector<ValueId> outs;
  for (ValueId v : p.outputs) {
    const ir::Node& producer = g.producer(v);
    if (producer.op != OpKind::Input && !op_info(producer.op).view) outs.push_back(v);
  }
  std::stable_sort(outs.begin(), outs.end(), [&](ValueId a, ValueId b) {
    return p.first_use[static_cast<size_t>(a)] < p.first_use[static_cast<size_t>(b)];
  });
  for (ValueId v : outs) {
    for (auto it = free_inputs.begin(); it != free_inputs.end(); ++it) {
      if (g.type(*it).bytes() != g.type(v).bytes() || !can_take_buffer(g, p, v, *it)) continue;
      p.placement[static_cast<size_t>(v)] = Placement::Donated;
      p.donor[static_cast<size_t>(v)] = *it;
      free_inputs.erase(it);
      break;
    }
  }
}

// Marks where each started collective is waited for: before the first node reading one of its
// outputs, a gradient bucket (AllReduce) also before the next bucket starts (so one bucket's
// inputs at a time outlive their last reader), else at the end; and keeps its inputs and
// outputs live until then (it reads and writes them until the wait).
void wait_for_collectives(const ir::Graph& g, MemoryPlan& p) {
  p.async_collectives = true;
  const int steps = static_cast<int>(p.schedule.size());
  p.wait_before.assign(static_cast<size_t>(steps), {});
  std::vector<int> started_at(static_cast<size_t>(g.num_values()), -1);  // output -> its start
  std::vector<int> running;  // steps of collectives started, not waited for
  auto wait_at = [&](int t, int s) {
    if (t < steps) p.wait_before[static_cast<size_t>(t)].push_back(s);
    const ir::Node& node = g.node(p.schedule[static_cast<size_t>(s)]);
    for (ValueId in : node.inputs) {
      const auto r = static_cast<size_t>(p.root[static_cast<size_t>(in)]);
      p.last_use[r] = std::max(p.last_use[r], std::min(t, steps - 1));
    }
    for (ValueId out : node.outputs) {
      const auto o = static_cast<size_t>(out);
      started_at[o] = -1;
      p.last_use[o] = std::max(p.last_use[o], std::min(t, steps - 1));
    }
    running.erase(std::find(running.begin(), running.end(), s));
  };
  for (int t = 0; t < steps; ++t) {
    const ir::Node& node = g.node(p.schedule[static_cast<size_t>(t)]);
    const bool bucket = starts_asynchronously(node) && node.op == OpKind::AllReduce;
    for (const int s : std::vector<int>(running)) {
      bool reads = false;
      for (ValueId in : node.inputs) reads |= started_at[static_cast<size_t>(in)] == s;
      if (reads || (bucket && g.node(p.schedule[static_cast<size_t>(s)]).op == OpKind::AllReduce))
        wait_at(t, s);
    }
    if (starts_asynchronously(node)) {
      running.push_back(t);
      for (ValueId out : node.outputs) started_at[static_cast<size_t>(out)] = t;
    }
  }
  for (const int s : std::vector<int>(running)) wait_at(steps, s);
}

// A started AllReduce (a gradient bucket) moves up to its inputs; a started gather stays where
// its pass put it (a prefetch is placed one block ahead, not at the step's start).
bool moves_early(const ir::Node& node) {
  return starts_asynchronously(node) && node.op == OpKind::AllReduce;
}

// Moves each started AllReduce to just after the last producer of its inputs (keeping the
// order of the buckets), so that it runs while the rest of the backward pass computes.
std::vector<NodeId> start_collectives_early(const ir::Graph& g, const std::vector<NodeId>& order) {
  std::vector<NodeId> schedule;
  std::vector<int> position(static_cast<size_t>(g.num_nodes()), -1);
  std::vector<std::vector<NodeId>> after(order.size());  // collectives to insert after step i
  int last_collective = -1;
  for (size_t i = 0; i < order.size(); ++i)
    position[static_cast<size_t>(order[i])] = static_cast<int>(i);
  for (NodeId n : order) {
    const ir::Node& node = g.node(n);
    if (!moves_early(node)) continue;
    int ready = last_collective;  // collectives keep their order: every rank issues them alike
    for (ValueId in : node.inputs)
      ready = std::max(ready, position[static_cast<size_t>(g.value(in).producer)]);
    SOLO_CHECK(ready >= 0, "memory plan: AllReduce without inputs");
    after[static_cast<size_t>(ready)].push_back(n);
    last_collective = ready;
  }
  for (size_t i = 0; i < order.size(); ++i) {
    if (!moves_early(g.node(order[i]))) schedule.push_back(order[i]);
    schedule.insert(schedule.end(), after[i].begin(), after[i].end());
  }
  return schedule;
}

}  // namespace

bool starts_asynchronously(const ir::Node& node) {
  return op_info(node.op).async_start && node.attrs.i_or(ir::kOverlapAttr, 0) != 0;
}

size_t align_up(size_t n) {
  return (n + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
}

MemoryPlan plan_memory(const ir::Graph& g, const std::vector<ValueId>& requested,
                       const std::vector<ValueId>& donatable, bool async_collectives) {
  MemoryPlan p;
  const auto nv = static_cast<size_t>(g.num_values());
  p.placement.assign(nv, Placement::None);
  p.offset.assign(nv, -1);
  p.root.resize(nv);
  p.donor.assign(nv, ir::kNoValue);
  p.first_use.assign(nv, -1);
  p.last_use.assign(nv, -1);
  for (size_t v = 0; v < nv; ++v) p.root[v] = static_cast<ValueId>(v);

  for (ValueId v : requested) {
    SOLO_CHECK(v >= 0 && v < g.num_values(), "requested output v", v, " is not in the graph");
    if (std::find(p.outputs.begin(), p.outputs.end(), v) == p.outputs.end()) p.outputs.push_back(v);
  }
  const std::vector<bool> needed = needed_nodes(g, p.outputs);
  for (NodeId n = 0; n < g.num_nodes(); ++n)
    if (needed[static_cast<size_t>(n)]) p.schedule.push_back(n);
  if (async_collectives) p.schedule = start_collectives_early(g, p.schedule);
  for (NodeId n : p.schedule)
    if (op_info(g.node(n).op).collective) {
      const int64_t group = g.node(n).attrs.i_or("group", 0);
      if (std::find(p.collective_groups.begin(), p.collective_groups.end(), group) ==
          p.collective_groups.end())
        p.collective_groups.push_back(group);
    }

  // Placement and liveness over the schedule. A value's bytes stay live while it or any
  // view of it may still be read.
  for (int step = 0; step < static_cast<int>(p.schedule.size()); ++step) {
    const ir::Node& node = g.node(p.schedule[static_cast<size_t>(step)]);
    for (ValueId in : node.inputs) {
      const auto r = static_cast<size_t>(p.root[static_cast<size_t>(in)]);
      p.last_use[r] = std::max(p.last_use[r], step);
      p.last_use[static_cast<size_t>(in)] = std::max(p.last_use[static_cast<size_t>(in)], step);
    }
    for (ValueId out : node.outputs) {
      const auto o = static_cast<size_t>(out);
      p.first_use[o] = p.last_use[o] = step;
      if (node.op == OpKind::Input) {
        p.placement[o] = Placement::Input;
      } else if (op_info(node.op).view) {
        p.placement[o] = Placement::View;
        p.root[o] = p.root[static_cast<size_t>(node.inputs[0])];
      } else {
        p.placement[o] = Placement::Arena;
      }
    }
  }
  if (async_collectives) wait_for_collectives(g, p);
  // Requested outputs own their storage; a requested view or input is copied into one.
  for (ValueId v : p.outputs) {
    p.placement[static_cast<size_t>(v)] = Placement::Output;
    p.root[static_cast<size_t>(v)] = v;
  }
  donate_inputs(g, donatable, p);
  for (ValueId v : p.outputs)
    if (p.placement[static_cast<size_t>(v)] == Placement::Output)
      p.output_bytes += g.type(v).bytes();
  // Views of an output read the output's storage.
  for (size_t v = 0; v < nv; ++v)
    if (p.placement[v] == Placement::View) {
      ValueId r = static_cast<ValueId>(v);
      while (op_info(g.producer(r).op).view &&
             p.placement[static_cast<size_t>(r)] != Placement::Output)
        r = g.producer(r).inputs[0];
      p.root[v] = r;
    }

  // Greedy by size: place the largest buffers first at the lowest offset that does not
  // overlap a placed buffer whose lifetime intersects.
  std::vector<ValueId> arena;
  for (size_t v = 0; v < nv; ++v)
    if (p.placement[v] == Placement::Arena) arena.push_back(static_cast<ValueId>(v));
  std::stable_sort(arena.begin(), arena.end(),
                   [&](ValueId a, ValueId b) { return g.type(a).bytes() > g.type(b).bytes(); });
  struct Placed {
    int64_t offset;
    size_t size;
    int first, last;
  };
  std::vector<Placed> placed;
  std::vector<std::pair<int64_t, size_t>> conflicts;
  for (ValueId v : arena) {
    const auto vi = static_cast<size_t>(v);
    const size_t size = align_up(g.type(v).bytes());
    conflicts.clear();
    for (const Placed& q : placed)
      if (q.first <= p.last_use[vi] && p.first_use[vi] <= q.last)
        conflicts.emplace_back(q.offset, q.size);
    std::sort(conflicts.begin(), conflicts.end());
    int64_t offset = 0;
    for (const auto& [o, s] : conflicts) {
      if (o >= offset + static_cast<int64_t>(size)) break;
      offset = std::max(offset, o + static_cast<int64_t>(s));
    }
    p.offset[vi] = offset;
    placed.push_back({offset, size, p.first_use[vi], p.last_use[vi]});
    p.arena_bytes = std::max(p.arena_bytes, static_cast<size_t>(offset) + size);
  }

  // Lower bound for reporting: the most arena bytes live at one step.
  std::vector<int64_t> delta(p.schedule.size() + 1, 0);
  for (ValueId v : arena) {
    const auto vi = static_cast<size_t>(v);
    const auto size = static_cast<int64_t>(align_up(g.type(v).bytes()));
    delta[static_cast<size_t>(p.first_use[vi])] += size;
    delta[static_cast<size_t>(p.last_use[vi]) + 1] -= size;
  }
  int64_t live = 0;
  for (int64_t d : delta) {
    live += d;
    p.live_peak_bytes = std::max(p.live_peak_bytes, static_cast<size_t>(live));
  }
  return p;
}

void check_memory_plan(const ir::Graph& g, const MemoryPlan& p) {
  std::vector<ValueId> arena;
  for (int v = 0; v < g.num_values(); ++v)
    if (p.placement[static_cast<size_t>(v)] == Placement::Arena) arena.push_back(v);
  for (size_t i = 0; i < arena.size(); ++i) {
    const auto a = static_cast<size_t>(arena[i]);
    SOLO_CHECK(p.offset[a] >= 0 && p.offset[a] + static_cast<int64_t>(g.type(arena[i]).bytes()) <=
                                       static_cast<int64_t>(p.arena_bytes),
               "memory plan: v", a, " lies outside the arena");
    for (size_t j = i + 1; j < arena.size(); ++j) {
      const auto b = static_cast<size_t>(arena[j]);
      const bool live_together = p.first_use[a] <= p.last_use[b] && p.first_use[b] <= p.last_use[a];
      const bool overlap =
          p.offset[a] < p.offset[b] + static_cast<int64_t>(g.type(arena[j]).bytes()) &&
          p.offset[b] < p.offset[a] + static_cast<int64_t>(g.type(arena[i]).bytes());
      const bool empty = g.type(arena[i]).bytes() == 0 || g.type(arena[j]).bytes() == 0;
      SOLO_CHECK(!(live_together && overlap && !empty), "memory plan: v", a, " and v", b,
                 " are live together but overlap");
    }
  }
}

}  // namespace solo::runtime
