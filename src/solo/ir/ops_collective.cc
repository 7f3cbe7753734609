#include <numeric>

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

namespace {

void check_group(const char* op, int64_t group) {
  SOLO_CHECK(group >= 0, op, ": communicator group ", group, " is negative; groups count from 0");
}

// Sums move on every communicator: floats and 32/64-bit integers.
void check_summable(const char* op, const TensorType& t) {
  check_operands(is_floating(t.dtype) || t.dtype == DType::I32 || t.dtype == DType::I64, op,
                 "needs float or integer tensors", {&t});
}

// Applies `along0` (a collective over axis 0) along `axis` of x: the axis goes to the front,
// and back afterwards.
template <class Along0>
ValueId along_axis(Graph& g, ValueId x, int64_t axis, const char* op, Along0 along0) {
  const TensorType& t = g.type(x);
  const int64_t rank = t.shape.rank();
  check_operands(rank >= 1, op, "needs a tensor of rank >= 1", {&t});
  check_operands(axis >= -rank && axis < rank, op,
                 "axis " + std::to_string(axis) + " is out of range", {&t});
  if (axis < 0) axis += rank;
  if (axis == 0) return along0(x);
  std::vector<int64_t> to_front(static_cast<size_t>(rank));
  std::iota(to_front.begin(), to_front.end(), 0);
  to_front.erase(to_front.begin() + axis);
  to_front.insert(to_front.begin(), axis);
  std::vector<int64_t> back(static_cast<size_t>(rank));
  for (int64_t i = 0; i < rank; ++i)
    back[static_cast<size_t>(to_front[static_cast<size_t>(i)])] = i;
  return permute(g, along0(permute(g, x, to_front)), back);
}

}  // namespace

ValueId all_reduce(Graph& g, ValueId x, bool average, int64_t group, bool overlap) {
  return all_reduce(g, std::vector<ValueId>{x}, average, group, overlap)[0];
}

std::vector<ValueId> all_reduce(Graph& g, const std::vector<ValueId>& xs, bool average,
                                int64_t group, bool overlap) {
  SOLO_CHECK(!xs.empty(), "AllReduce: no tensors given");
  check_group("AllReduce", group);
  std::vector<TensorType> types;
  for (ValueId x : xs) {
    check_summable("AllReduce", g.type(x));
    types.push_back(g.type(x));
  }
  Attrs attrs = Attrs().set("average", average).set("group", group);
  if (overlap) attrs.set(kOverlapAttr, true);
  return g.add_node(OpKind::AllReduce, xs, types, std::move(attrs));
}

ValueId all_gather(Graph& g, ValueId x, int64_t ranks, int64_t axis, int64_t group, bool overlap) {
  check_group("AllGather", group);
  SOLO_CHECK(ranks >= 1, "AllGather: ranks = ", ranks, "; a group has at least one rank");
  return along_axis(g, x, axis, "AllGather", [&](ValueId v) {
    TensorType out = g.type(v);
    out.shape[0] *= ranks;
    Attrs attrs = Attrs().set("ranks", ranks).set("group", group);
    if (overlap) attrs.set(kOverlapAttr, true);
    return g.add_node(OpKind::AllGather, {v}, {out}, std::move(attrs))[0];
  });
}

ValueId reduce_scatter(Graph& g, ValueId x, int64_t ranks, int64_t axis, int64_t group) {
  check_group("ReduceScatter", group);
  SOLO_CHECK(ranks >= 1, "ReduceScatter: ranks = ", ranks, "; a group has at least one rank");
  return along_axis(g, x, axis, "ReduceScatter", [&](ValueId v) {
    const TensorType& t = g.type(v);
    check_summable("ReduceScatter", t);
    check_operands(t.shape[0] % ranks == 0, "ReduceScatter",
                   "the scattered axis is not divisible by the " + std::to_string(ranks) +
                       " ranks; pad it or choose another axis",
                   {&t});
    TensorType out = t;
    out.shape[0] /= ranks;
    return g.add_node(OpKind::ReduceScatter, {v}, {out},
                      Attrs().set("ranks", ranks).set("group", group))[0];
  });
}

ValueId local_shard(Graph& g, ValueId x, int64_t ranks, int64_t group) {
  check_group("LocalShard", group);
  const TensorType& t = g.type(x);
  check_operands(
      t.shape.rank() == 1 && ranks >= 1 && t.shape[0] % ranks == 0, "LocalShard",
      "needs a flat tensor whose length divides into the " + std::to_string(ranks) + " ranks",
      {&t});
  return g.add(OpKind::LocalShard, {x}, {Shape{t.shape[0] / ranks}, t.dtype},
               Attrs().set("ranks", ranks).set("group", group));
}

namespace {
Attrs point_to_point(const char* op, int64_t peer, int64_t tag, int64_t group) {
  check_group(op, group);
  SOLO_CHECK(peer >= 0, op, ": peer ", peer, " is negative; peers are ranks of the group");
  SOLO_CHECK(tag >= 0, op, ": tag ", tag, " is negative; use a tag >= 0");
  return Attrs().set("peer", peer).set("tag", tag).set("group", group);
}
}  // namespace

ValueId send(Graph& g, ValueId x, int64_t peer, int64_t tag, int64_t group) {
  return g.add(OpKind::Send, {x}, {Shape{0}, DType::Bool},
               point_to_point("Send", peer, tag, group));
}

ValueId recv(Graph& g, const TensorType& type, int64_t peer, int64_t tag, int64_t group) {
  return g.add(OpKind::Recv, {}, type, point_to_point("Recv", peer, tag, group));
}

}  // namespace solo::ir
