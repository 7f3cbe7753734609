#include "solo/compile/splitter.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "solo/compile/data_parallel.h"
#include "solo/core/error.h"
#include "solo/core/op_info.h"
#include "solo/ir/ops.h"

namespace solo::compile {

namespace {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::TensorType;
using ir::ValueId;

// Unplaced: a parameter the tensor-parallel pass has not emitted yet; its first reader
// decides whether it is split (and along which axis) or whole.
enum class Kind : uint8_t { Whole, Split, Partial, Unplaced };

struct Place {
  Kind kind = Kind::Whole;
  int axis = -1;  // Split: the axis this rank holds a block of
};

constexpr Place kWhole{};
constexpr Place kPartial{Kind::Partial, -1};
constexpr Place split_on(int axis) {
  return {Kind::Split, axis};
}

bool has_bit(uint8_t mask, size_t i) {
  return i < 8 && ((mask >> i) & 1u) != 0;
}

size_t at(ValueId v) {
  return static_cast<size_t>(v);
}

class Splitter {
 public:
  Splitter(const Graph& g, const SplitSeeds& seeds, std::vector<ValueId>& value_of)
      : g_(g),
        n_(seeds.ranks),
        seeds_(seeds),
        value_of_(value_of),
        marked_(g.gradients().begin(), g.gradients().end()) {
    value_of_.assign(static_cast<size_t>(g.num_values()), kNoValue);
    place_.resize(static_cast<size_t>(g.num_values()));
  }

  Graph run(const std::vector<ValueId>& outputs, SplitStats* stats) {
    for (ir::NodeId id = 0; id < g_.num_nodes(); ++id) {
      const Node& node = g_.node(id);
      scope_ = &g_.scope_of(id);
      for (ValueId v : node.inputs)
        if (waiting_.count(v)) reduce_bucket();  // a reader needs the summed gradient
      visit(node);
      for (ValueId v : node.outputs) collect_gradient(v);
    }
    reduce_bucket();
    static const std::string kNoScope;
    scope_ = &kNoScope;
    for (ir::NodeId id = 0; id < g_.num_nodes(); ++id)  // read by no one: bound all the same
      if (g_.node(id).op == OpKind::Input) local(g_.node(id).outputs[0]);
    SplitStats local_stats;
    SplitStats& st = stats ? *stats : local_stats;
    for (ValueId v : outputs) {
      if (seeds_.place_parameters && is_split(v)) {  // a tensor-parallel block stays one
        st.output_axes[local(v)] = place(v).axis;
        continue;
      }
      value_of_[at(v)] = whole(v);
    }
    for (ValueId v : g_.gradients()) {
      // Computed whole, or (tensor parallelism) this rank's block of a split parameter's
      // gradient: summed by no one here, so a later pass over other ranks still finds it.
      const Kind k = place_[at(v)].kind;
      if ((k == Kind::Whole && !reduced_.count(v)) || k == Kind::Split)
        out_.mark_gradient(value_of_[at(v)]);
    }
    st.gathered = gathered_;
    return std::move(out_);
  }

 private:
  // This rank's value of v; an unplaced parameter is emitted whole for the reader that asks.
  ValueId local(ValueId v) {
    if (place(v).kind == Kind::Unplaced) {
      const Node& producer = g_.producer(v);
      std::vector<ValueId> inputs;
      for (ValueId x : producer.inputs) inputs.push_back(local(x));
      emit_all(producer, std::move(inputs), kWhole);
    }
    return value_of_[at(v)];
  }
  const Place& place(ValueId v) const { return place_[at(v)]; }
  void set(ValueId v, ValueId local_value, Place p) {
    value_of_[at(v)] = local_value;
    place_[at(v)] = p;
  }
  TensorType local_type(ValueId v, Place p) const {
    TensorType t = g_.type(v);
    if (p.kind == Kind::Split) t.shape[p.axis] /= n_;
    return t;
  }
  bool is_split(ValueId v) const { return place(v).kind == Kind::Split; }

  // Appends node's op on `inputs` with its outputs placed as `places` (attrs: node's, or
  // these with the shapes of this rank).
  std::vector<ValueId> emit(const Node& node, std::vector<ValueId> inputs,
                            const std::vector<Place>& places, const Attrs* attrs = nullptr) {
    std::vector<TensorType> types;
    for (size_t k = 0; k < node.outputs.size(); ++k)
      types.push_back(local_type(node.outputs[k], places[k]));
    const std::vector<ValueId> outs =
        out_.copy_node(g_, node, std::move(inputs), std::move(types), attrs ? *attrs : node.attrs);
    for (size_t k = 0; k < outs.size(); ++k) set(node.outputs[k], outs[k], places[k]);
    return outs;
  }
  std::vector<ValueId> emit_all(const Node& node, std::vector<ValueId> inputs, Place p,
                                const Attrs* attrs = nullptr) {
    return emit(node, std::move(inputs), std::vector<Place>(node.outputs.size(), p), attrs);
  }

  // The one-device value of v on this rank: a partial sum is summed over the ranks (and
  // stays so for later readers), a split one gathered once.
  ValueId whole(ValueId v) {
    const Place p = place(v);
    if (p.kind == Kind::Whole || p.kind == Kind::Unplaced) return local(v);
    ir::OriginGuard origin(*scope_, /*no_grad=*/true);
    if (p.kind == Kind::Partial) {
      const ValueId summed = ir::all_reduce(out_, local(v), /*average=*/false, seeds_.group);
      set(v, summed, kWhole);
      return summed;
    }
    if (auto it = gathered_of_.find(v); it != gathered_of_.end()) return it->second;
    ++gathered_;
    const ValueId w = ir::all_gather(out_, local(v), n_, p.axis, seeds_.group);
    gathered_of_.emplace(v, w);
    return w;
  }

  // Whether block() can make this rank's block of v along `axis` without the rows' data.
  bool can_block(ValueId v, int axis) const {
    const Place& p = place(v);
    if (p.kind == Kind::Split) return p.axis == axis;
    const Shape& s = g_.shape(v);
    if (axis < 0 || axis >= s.rank() || s[axis] % n_ != 0) return false;
    const Node& producer = g_.producer(v);
    if (producer.op == OpKind::Full || axis == 0 || p.kind == Kind::Unplaced) return true;
    return producer.op == OpKind::BroadcastTo && !spans(producer.inputs[0], v, axis);
  }
  // Whether x, broadcast to `to`, has more than one element along to's `axis`.
  bool spans(ValueId x, ValueId to, int axis) const {
    const int a = axis - (g_.shape(to).rank() - g_.shape(x).rank());
    return a >= 0 && g_.shape(x)[a] != 1;
  }
  // This rank's block along `axis` of v (can_block(v, axis)): a split value itself, a constant
  // or a broadcast made at the block's shape, or a block of the whole tensor (LocalShard).
  ValueId block(ValueId v, int axis) {
    if (is_split(v)) return local(v);
    auto key = std::make_pair(v, axis);
    if (auto it = blocks_.find(key); it != blocks_.end()) return it->second;
    const Node& producer = g_.producer(v);
    if (place(v).kind == Kind::Unplaced) {  // placed now: emitted as this rank's block
      if (producer.op == OpKind::Cast)      // a parameter's low-precision copy: of its block
        return emit_all(producer, {block(producer.inputs[0], axis)}, split_on(axis))[0];
      if (seeds_.parameters_as_blocks || producer.attrs.has("mapped")) {
        Attrs attrs = producer.attrs;  // the parameter: bound (or read from its file) as its block
        attrs.set(kSplitAxisAttr, static_cast<int64_t>(axis))
            .set(kSplitRanksAttr, static_cast<int64_t>(n_));
        return emit_all(producer, {}, split_on(axis), &attrs)[0];
      }
      // The whole parameter is bound (the first step): this rank cuts its block out, and every
      // reader uses the block.
      const ValueId w = local(v);
      const ValueId b = cut_block(w, axis);
      set(v, b, split_on(axis));
      return b;
    }
    const TensorType t = local_type(v, split_on(axis));
    ValueId b = kNoValue;
    if (producer.op == OpKind::Full) {
      b = out_.copy_node(g_, producer, {}, {t}, producer.attrs)[0];
    } else if (producer.op == OpKind::BroadcastTo && !spans(producer.inputs[0], v, axis)) {
      Attrs attrs = producer.attrs;
      attrs.set("shape", t.shape.dims());
      b = out_.copy_node(g_, producer, {whole(producer.inputs[0])}, {t}, attrs)[0];
    } else {
      b = cut_block(whole(v), 0);
    }
    blocks_.emplace(key, b);
    return b;
  }

  // This rank's block along `axis` of w, a whole value of out_: axis 0 is a contiguous run of
  // the flat tensor; another axis is brought to the front for the cut and put back.
  ValueId cut_block(ValueId w, int axis) {
    ir::OriginGuard origin(*scope_, /*no_grad=*/true);
    const int rank = out_.shape(w).rank();
    std::vector<int64_t> front(static_cast<size_t>(rank));
    for (int i = 0; i < rank; ++i) front[static_cast<size_t>(i)] = i;
    std::rotate(front.begin(), front.begin() + axis, front.begin() + axis + 1);
    const ValueId moved = axis == 0 ? w : ir::permute(out_, w, front);
    Shape block_shape = out_.shape(moved);
    block_shape[0] /= n_;
    const ValueId flat = ir::reshape(out_, moved, Shape{out_.shape(moved).numel()});
    const ValueId b = ir::reshape(out_, ir::local_shard(out_, flat, n_, seeds_.group), block_shape);
    if (axis == 0) return b;
    std::vector<int64_t> back(static_cast<size_t>(rank));  // the inverse of `front`
    for (int i = 0; i < rank; ++i) back[static_cast<size_t>(front[static_cast<size_t>(i)])] = i;
    return ir::permute(out_, b, back);
  }

  void visit(const Node& node) {
    if (node.op == OpKind::Input) return input(node);
    // A parameter's low-precision copy (mixed precision) is placed with the parameter, by its
    // first reader.
    if (node.op == OpKind::Cast && place(node.inputs[0]).kind == Kind::Unplaced) {
      place_[at(node.outputs[0])] = Place{Kind::Unplaced, -1};
      return;
    }
    bool split = false, partial = false;
    for (ValueId v : node.inputs) {
      split = split || is_split(v);
      partial = partial || place(v).kind == Kind::Partial;
    }
    if (partial && keeps_partial(node)) {
      std::vector<ValueId> inputs;
      for (ValueId v : node.inputs) inputs.push_back(local(v));
      emit_all(node, std::move(inputs), kPartial);
      return;
    }
    if (partial)
      for (ValueId v : node.inputs)
        if (place(v).kind == Kind::Partial) whole(v);
    if (seeds_.place_parameters && vocab_parallel_lookup(node)) return;
    bool done = false;
    if (split) {
      switch (op_info(node.op).split) {
        case SplitRule::Pointwise:
          done = pointwise(node);
          break;
        case SplitRule::Rows:
          done = rows(node);
          break;
        case SplitRule::Own:
          done = own_rule(node);
          break;
        case SplitRule::Whole:
          break;
      }
      if (!done && op_info(node.op).per_head) done = heads(node);
    }
    if (!done && node.op == OpKind::MatMul && seeds_.place_parameters) done = column_parallel(node);
    if (!done) run_whole(node);
  }

  // A linear op of partial sums is a partial sum of the op's results: summing can wait.
  bool keeps_partial(const Node& node) const {
    for (ValueId v : node.inputs)
      if (place(v).kind != Kind::Partial) return false;
    switch (node.op) {
      case OpKind::Add:
      case OpKind::Sub:
        return g_.shape(node.inputs[0]) == g_.shape(node.inputs[1]);
      case OpKind::Cast:  // widening only: narrowing each rank's sum loses what one device keeps
        if (seeds_.half_sums && dtype_size(g_.dtype(node.inputs[0])) == 2) return false;
        return dtype_size(g_.dtype(node.outputs[0])) >= dtype_size(g_.dtype(node.inputs[0]));
      case OpKind::MulScalar:
      case OpKind::AllReduce:  // summed over another group: still this group's partial sum
      case OpKind::Neg:
      case OpKind::Reshape:
      case OpKind::Permute:
      case OpKind::Sum:
      case OpKind::Mean:
        return true;
      default:
        return false;
    }
  }

  void run_whole(const Node& node) {
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs) inputs.push_back(whole(v));
    emit_all(node, std::move(inputs), kWhole);
  }

  void input(const Node& node) {
    const ValueId v = node.outputs[0];
    // A block a tensor-parallel plan left (once the tensor-parallel pass has bound it as its
    // block, split_axis says so and later passes take it as they find it).
    if (node.attrs.has(ir::kHeldAxisAttr) && !node.attrs.has(kSplitAxisAttr)) {
      const int axis = static_cast<int>(node.attrs.i(ir::kHeldAxisAttr));
      const int64_t ranks = node.attrs.i(ir::kHeldRanksAttr);
      SOLO_CHECK(seeds_.place_parameters && ranks == n_, "input '", node.name,
                 "' is held as blocks over ", ranks,
                 " tensor-parallel ranks, but this plan splits over ",
                 seeds_.place_parameters ? n_ : 1, "; keep the plan that trained it");
      Attrs attrs = node.attrs;
      attrs.set(kSplitAxisAttr, static_cast<int64_t>(axis)).set(kSplitRanksAttr, ranks);
      emit_all(node, {}, split_on(axis), &attrs);
      return;
    }
    if (seeds_.place_parameters && !node.batch) {
      place_[at(v)] = Place{Kind::Unplaced, -1};
      return;
    }
    if (!node.batch || !seeds_.split_batch) {
      emit_all(node, {}, kWhole);
      return;
    }
    const Shape& s = g_.shape(v);
    SOLO_CHECK(s.rank() >= 1 && s[0] % n_ == 0, "the batch has ", s.rank() ? s[0] : 0,
               " rows, which do not split evenly over ", n_,
               " data-parallel ranks; use a batch size that is a multiple of ", n_);
    Attrs attrs = node.attrs;
    attrs.set(kRowShardsAttr, static_cast<int64_t>(n_));
    emit_all(node, {}, split_on(0), &attrs);
  }

  // Operands aligned to the output's axis (NumPy broadcasting), each its block along it or
  // whole where it broadcasts.
  bool pointwise(const Node& node) {
    const int rank = g_.shape(node.outputs[0]).rank();
    for (ValueId o : node.outputs)
      if (g_.shape(o) != g_.shape(node.outputs[0])) return false;
    int axis = -1;
    for (ValueId v : node.inputs) {
      if (!is_split(v)) continue;
      const int a = place(v).axis + rank - g_.shape(v).rank();
      if (axis >= 0 && a != axis) return false;
      axis = a;
    }
    auto aligned = [&](ValueId v) { return axis - (rank - g_.shape(v).rank()); };
    auto broadcast = [&](ValueId v) {
      return !is_split(v) && (aligned(v) < 0 || g_.shape(v)[aligned(v)] == 1);
    };
    for (ValueId v : node.inputs)
      if (!broadcast(v) && !can_block(v, aligned(v))) return false;
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs) inputs.push_back(broadcast(v) ? local(v) : block(v, aligned(v)));
    emit_all(node, std::move(inputs), split_on(axis));
    return true;
  }

  bool rows(const Node& node) {
    const OpInfo& info = op_info(node.op);
    if (node.attrs.has("axis") && node.attrs.i("axis") == 0) return false;  // across the rows
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const ValueId v = node.inputs[i];
      const bool row = has_bit(info.row_inputs, i);
      if (row && (g_.shape(v).rank() < 2 || !can_block(v, 0))) return false;  // rows of what?
      if (!row && is_split(v)) return false;
    }
    std::vector<ValueId> inputs;
    for (size_t i = 0; i < node.inputs.size(); ++i)
      inputs.push_back(has_bit(info.row_inputs, i) ? block(node.inputs[i], 0)
                                                   : local(node.inputs[i]));
    std::vector<Place> places;
    for (size_t k = 0; k < node.outputs.size(); ++k)
      places.push_back(has_bit(info.row_sum_outputs, k) ? kPartial : split_on(0));
    emit(node, std::move(inputs), places);
    return true;
  }

  bool own_rule(const Node& node) {
    switch (node.op) {
      case OpKind::Sum:
      case OpKind::Mean:
        return reduce(node);
      case OpKind::BroadcastTo:
        return broadcast_to(node);
      case OpKind::Reshape:
        return reshape(node);
      case OpKind::Permute: {
        const std::vector<int64_t>& perm = node.attrs.ints("perm");
        const auto k = std::find(perm.begin(), perm.end(), place(node.inputs[0]).axis);
        emit_all(node, {local(node.inputs[0])}, split_on(static_cast<int>(k - perm.begin())));
        return true;
      }
      case OpKind::Slice:
      case OpKind::SliceBackward:
        return slice(node);
      case OpKind::Concat:
        return concat(node);
      case OpKind::MatMul:
        return matmul(node);
      case OpKind::AllReduce:
      case OpKind::AllGather:
        return collective(node);
      case OpKind::CrossEntropy:
        return cross_entropy(node);
      case OpKind::CrossEntropyBackward:
        return cross_entropy_backward(node);
      case OpKind::VocabShardCrossEntropy:
      case OpKind::VocabShardCrossEntropyBackward:
        return labelled_rows(node);
      default:
        return false;
    }
  }

  // Ops on rows with their labels (a block's loss terms, per row): every operand with rows
  // split along them, scalars whole; the outputs are this rank's rows. (SplitRule::Rows asks
  // for rank >= 2, which [N] labels lack.)
  bool labelled_rows(const Node& node) {
    for (ValueId v : node.inputs)
      if (g_.shape(v).rank() == 0 ? is_split(v) : !can_block(v, 0)) return false;
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs)
      inputs.push_back(g_.shape(v).rank() == 0 ? local(v) : block(v, 0));
    emit_all(node, std::move(inputs), split_on(0));
    return true;
  }

  // Over the split axis: this rank's rows summed (a Mean's by its global count); else split.
  bool reduce(const Node& node) {
    const ValueId x = node.inputs[0];
    const int a = place(x).axis;
    const std::vector<int64_t>& axes = node.attrs.ints("axes");
    if (std::find(axes.begin(), axes.end(), a) == axes.end()) {
      const bool keepdim = node.attrs.i("keepdim") != 0;
      const auto before = std::count_if(axes.begin(), axes.end(), [&](int64_t r) { return r < a; });
      emit_all(node, {local(x)}, split_on(keepdim ? a : a - static_cast<int>(before)));
      return true;
    }
    const ValueId r = emit_all(node, {local(x)}, kPartial)[0];
    if (node.op == OpKind::Mean) {  // this rank's mean over B/n rows, to its share of B's
      ir::OriginGuard origin(*scope_, node.no_grad);
      set(node.outputs[0], ir::mul_scalar(out_, r, 1.0 / n_), kPartial);
    }
    return true;
  }

  bool broadcast_to(const Node& node) {
    const ValueId x = node.inputs[0], o = node.outputs[0];
    const int a = place(x).axis + g_.shape(o).rank() - g_.shape(x).rank();
    Attrs attrs = node.attrs;
    attrs.set("shape", local_type(o, split_on(a)).shape.dims());
    emit_all(node, {local(x)}, split_on(a), &attrs);
    return true;
  }

  // The rows' block stays one block along the first output axis k after the same leading
  // elements whose size divides over the ranks (row-major order is kept by a reshape).
  bool reshape(const Node& node) {
    const ValueId x = node.inputs[0], o = node.outputs[0];
    const Shape &in = g_.shape(x), &out = g_.shape(o);
    const int a = place(x).axis;
    int64_t before = 1;
    for (int i = 0; i < a; ++i) before *= in[i];
    int64_t acc = 1;
    for (int k = 0; k < out.rank() && acc <= before; ++k) {
      if (acc == before && out[k] % n_ == 0) {
        Attrs attrs = node.attrs;
        attrs.set("shape", local_type(o, split_on(k)).shape.dims());
        emit_all(node, {local(x)}, split_on(k), &attrs);
        return true;
      }
      acc *= out[k];
    }
    return false;
  }

  bool slice(const Node& node) {
    const ValueId x = node.inputs[0];
    const int a = place(x).axis;
    if (node.attrs.i("axis") == a) return false;  // the slice would cut across the blocks
    Attrs attrs = node.attrs;
    if (node.op == OpKind::SliceBackward)
      attrs.set("shape", local_type(node.outputs[0], split_on(a)).shape.dims());
    emit_all(node, {local(x)}, split_on(a), &attrs);
    return true;
  }

  bool concat(const Node& node) {
    int axis = -1;
    for (ValueId v : node.inputs) {
      if (!is_split(v)) continue;
      if (axis >= 0 && place(v).axis != axis) return false;
      axis = place(v).axis;
    }
    if (axis == node.attrs.i("axis")) return false;
    for (ValueId v : node.inputs)
      if (!can_block(v, axis)) return false;
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs) inputs.push_back(block(v, axis));
    emit_all(node, std::move(inputs), split_on(axis));
    return true;
  }

  // a [..., M, K] (trans_a: [..., K, M]) times b [K, N] or [..., K, N] (trans_b: N, K).
  bool matmul(const Node& node) {
    const ValueId a = node.inputs[0], b = node.inputs[1];
    const int ra = g_.shape(a).rank(), rb = g_.shape(b).rank();
    const bool ta = node.attrs.i("trans_a") != 0, tb = node.attrs.i("trans_b") != 0;
    const int m_axis = ta ? ra - 1 : ra - 2, ka_axis = ta ? ra - 2 : ra - 1;
    const int kb_axis = tb ? rb - 1 : rb - 2, n_axis = tb ? rb - 2 : rb - 1;
    const int pa = is_split(a) ? place(a).axis : -1, pb = is_split(b) ? place(b).axis : -1;
    auto run = [&](int axis_a, int axis_b, Place p) {
      if ((axis_a >= 0 && !can_block(a, axis_a)) || (axis_b >= 0 && !can_block(b, axis_b)))
        return false;
      if ((axis_a < 0 && is_split(a)) || (axis_b < 0 && is_split(b))) return false;
      emit_all(
          node,
          {axis_a >= 0 ? block(a, axis_a) : local(a), axis_b >= 0 ? block(b, axis_b) : local(b)},
          p);
      return true;
    };
    if (pa >= 0 && pa < ra - 2)  // a batch axis: b's too when b is batched
      return run(pa, rb > 2 ? pa : -1, split_on(pa));
    if (pa == m_axis) return run(pa, -1, split_on(ra - 2));
    if (pb == n_axis) return run(-1, pb, split_on(ra - 1));
    if (pa == ka_axis || pb == kb_axis) return run(ka_axis, kb_axis, kPartial);
    return false;
  }

  // Tensor parallelism's column-parallel matmul: a whole activation times a weight not yet
  // placed, which is split along its output axis (b [K, N], or [N, K] under trans_b).
  bool column_parallel(const Node& node) {
    const ValueId a = node.inputs[0], b = node.inputs[1];
    if (place(a).kind != Kind::Whole || place(b).kind != Kind::Unplaced) return false;
    const int rb = g_.shape(b).rank();
    if (rb != 2) return false;
    const int n_axis = node.attrs.i("trans_b") != 0 ? 0 : 1;
    if (!can_block(b, n_axis)) return false;
    emit_all(node, {local(a), block(b, n_axis)}, split_on(g_.shape(node.outputs[0]).rank() - 1));
    return true;
  }

  // Ops that act on each head alone (op table: per_head): operands [B, T, H, D] split along
  // the heads, an lse [B, H, T] too, every other operand whole; outputs likewise, and the
  // row_sum_outputs (a norm's weight gradient) a partial sum over this rank's heads.
  bool heads(const Node& node) {
    auto head_axis = [&](ValueId v) {
      return g_.shape(v).rank() == 4 ? 2 : g_.shape(v).rank() == 3 ? 1 : -1;
    };
    for (ValueId v : node.inputs) {
      const int h = head_axis(v);
      if (h < 0 ? is_split(v) : !can_block(v, h)) return false;
    }
    std::vector<Place> places;
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      const int h = head_axis(node.outputs[k]);
      if (has_bit(op_info(node.op).row_sum_outputs, k)) {
        places.push_back(kPartial);
      } else {
        if (h < 0 || g_.shape(node.outputs[k])[h] % n_ != 0) return false;
        places.push_back(split_on(h));
      }
    }
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs)
      inputs.push_back(head_axis(v) < 0 ? local(v) : block(v, head_axis(v)));
    emit(node, std::move(inputs), places);
    return true;
  }

  // A collective another pass added (tensor parallelism's, when data parallelism runs after
  // it) acts on each element alike: its operands' blocks along one axis, other than an
  // all-gather's, are its results' blocks.
  bool collective(const Node& node) {
    int axis = -1;
    for (ValueId v : node.inputs) {
      if (!is_split(v) || (axis >= 0 && place(v).axis != axis)) return false;
      axis = place(v).axis;
    }
    if (node.op == OpKind::AllGather && node.attrs.i_or("axis", 0) == axis) return false;
    std::vector<ValueId> inputs;
    for (ValueId v : node.inputs) inputs.push_back(local(v));
    emit_all(node, std::move(inputs), split_on(axis));
    return true;
  }

  // labels -> the number of them that are not ignore_index, of dtype dt (a scalar).
  ValueId counted_labels(ValueId labels, int64_t ignore, DType dt) {
    const ValueId ign = ir::full(out_, Shape{}, out_.dtype(labels), static_cast<double>(ignore));
    const ValueId below = ir::sum(out_, ir::cast(out_, ir::less(out_, labels, ign), dt));
    const ValueId above = ir::sum(out_, ir::cast(out_, ir::less(out_, ign, labels), dt));
    return ir::add(out_, below, above);
  }

  struct Counts {
    ValueId here = kNoValue, all = kNoValue;  // this rank's counted labels, and every rank's
  };
  // The counts of the labels of step value `labels`, made once per (labels, ignore_index).
  Counts counts(ValueId labels, ValueId local_labels, int64_t ignore, DType dt) {
    auto key = std::make_pair(labels, ignore);
    if (auto it = counts_.find(key); it != counts_.end()) return it->second;
    Counts c;
    c.here = counted_labels(local_labels, ignore, dt);
    c.all = ir::all_reduce(out_, c.here, /*average=*/false);
    counts_.emplace(key, c);
    return c;
  }

  // The mean over the counted rows of all ranks: (sum of the ranks' losses) / (their counts).
  bool cross_entropy(const Node& node) {
    const ValueId logits = node.inputs[0], labels = node.inputs[1];
    if (place(logits).axis == 1) return vocab_parallel_cross_entropy(node);
    if (!can_block(logits, 0) || !can_block(labels, 0)) return false;
    const ValueId lg = block(logits, 0), lb = block(labels, 0);
    const int64_t ignore = node.attrs.i("ignore_index");
    const DType dt = g_.dtype(node.outputs[0]);
    const ValueId mean = out_.copy_node(g_, node, {lg, lb})[0];
    ir::OriginGuard origin(*scope_, node.no_grad);
    const ValueId here = counted_labels(lb, ignore, dt);
    // This rank's sum of losses: its mean times its count, 0 when all its rows are ignored
    // (its mean is then NaN).
    const ValueId zero = ir::full(out_, Shape{}, dt, 0.0);
    const ValueId sum =
        ir::where(out_, ir::less(out_, zero, here), ir::mul(out_, mean, here), zero);
    const std::vector<ValueId> totals = ir::all_reduce(out_, {sum, here}, /*average=*/false);
    counts_.emplace(std::make_pair(labels, ignore), Counts{here, totals[1]});
    set(node.outputs[0], ir::div(out_, totals[0], totals[1]), kWhole);
    return true;
  }

  // The kernel divides by this rank's count: dloss is scaled by count here / count of all.
  bool cross_entropy_backward(const Node& node) {
    const ValueId logits = node.inputs[0], labels = node.inputs[1], dloss = node.inputs[2];
    if (place(logits).axis == 1) return vocab_parallel_cross_entropy_backward(node);
    if (!can_block(logits, 0) || !can_block(labels, 0) || is_split(dloss)) return false;
    const ValueId lg = block(logits, 0), lb = block(labels, 0);
    ir::OriginGuard origin(*scope_, node.no_grad);
    const Counts c = counts(labels, lb, node.attrs.i("ignore_index"), g_.dtype(dloss));
    const ValueId scaled = ir::div(out_, ir::mul(out_, local(dloss), c.here), c.all);
    emit_all(node, {lg, lb, scaled}, split_on(0));
    return true;
  }

  // ---- the vocabulary split (tensor parallelism): logits [N, V] split along V ----------

  // What the vocabulary-parallel loss and its backward share, per (logits, labels, ignore).
  struct VocabLoss {
    ValueId lse = kNoValue;     // [N]: each row's logsumexp over the whole vocabulary
    ValueId target = kNoValue;  // [N]: each row's label logit (0 for ignored rows)
    ValueId kept = kNoValue;    // [N]: 1 for a counted row, else 0 (the loss dtype)
    ValueId count = kNoValue;   // []: the counted rows
  };
  const VocabLoss& vocab_loss(ValueId logits, ValueId labels, int64_t ignore) {
    const auto key = std::make_tuple(logits, labels, ignore);
    if (auto it = vocab_losses_.find(key); it != vocab_losses_.end()) return it->second;
    const std::vector<ValueId> shard =
        ir::vocab_shard_cross_entropy(out_, local(logits), local(labels), n_, ignore, seeds_.group);
    const DType dt = out_.dtype(shard[0]);
    VocabLoss v;
    v.lse = global_lse(shard[0]);
    v.target = ir::all_reduce(out_, shard[1], /*average=*/false, seeds_.group);
    const ValueId lb = local(labels);
    const ValueId ign = ir::full(out_, Shape{}, out_.dtype(lb), static_cast<double>(ignore));
    v.kept = ir::add(out_, ir::cast(out_, ir::less(out_, lb, ign), dt),
                     ir::cast(out_, ir::less(out_, ign, lb), dt));
    v.count = ir::sum(out_, v.kept);
    return vocab_losses_.emplace(key, v).first->second;
  }

  // lse [N] of this rank's block -> [N] over every block: the blocks' lse gathered (n values
  // a row, not the logits) and combined shifted by their max, so no exp overflows.
  ValueId global_lse(ValueId lse) {
    const int64_t rows = out_.shape(lse)[0];
    const ValueId all = ir::all_gather(out_, ir::reshape(out_, lse, Shape{1, rows}), n_,
                                       /*axis=*/0, seeds_.group);  // [n, N]
    ValueId mx = ir::slice(out_, all, 0, 0, 1);
    for (int r = 1; r < n_; ++r) mx = ir::maximum(out_, mx, ir::slice(out_, all, 0, r, r + 1));
    const ValueId sum = ir::sum(out_, ir::exp(out_, ir::sub(out_, all, mx)), {0});
    return ir::add(out_, ir::log(out_, sum), ir::reshape(out_, mx, Shape{rows}));
  }

  // The mean over counted rows of logsumexp - target logit, with no rank holding whole rows.
  bool vocab_parallel_cross_entropy(const Node& node) {
    const ValueId logits = node.inputs[0], labels = node.inputs[1];
    if (!can_block(logits, 1) || place(labels).kind != Kind::Whole) return false;
    ir::OriginGuard origin(*scope_, node.no_grad);
    const VocabLoss& v = vocab_loss(logits, labels, node.attrs.i("ignore_index"));
    const ValueId rows = ir::mul(out_, ir::sub(out_, v.lse, v.target), v.kept);
    set(node.outputs[0], ir::div(out_, ir::sum(out_, rows), v.count), kWhole);
    return true;
  }

  // This rank's block of dlogits: (softmax - onehot) * dloss / count, its columns only.
  bool vocab_parallel_cross_entropy_backward(const Node& node) {
    const ValueId logits = node.inputs[0], labels = node.inputs[1], dloss = node.inputs[2];
    if (!can_block(logits, 1) || place(labels).kind != Kind::Whole || is_split(dloss)) return false;
    ir::OriginGuard origin(*scope_, node.no_grad);
    const int64_t ignore = node.attrs.i("ignore_index");
    const VocabLoss& v = vocab_loss(logits, labels, ignore);
    const ValueId scale = ir::div(out_, local(dloss), v.count);
    set(node.outputs[0],
        ir::vocab_shard_cross_entropy_backward(out_, local(logits), local(labels), v.lse, scale, n_,
                                               ignore, seeds_.group),
        split_on(1));
    return true;
  }

  // Embedding of a weight [V, D] split along V (placed so now when unplaced and the ranks
  // divide V, or already so by a tied head): each rank looks up the ids of its block, zeros
  // elsewhere, a partial sum. EmbeddingBackward of those ids: this rank's block of dweight.
  bool vocab_parallel_lookup(const Node& node) {
    if (node.op == OpKind::Embedding) {
      const ValueId w = node.inputs[0], ids = node.inputs[1];
      const bool vocab_split = is_split(w) && place(w).axis == 0;
      const bool placeable = place(w).kind == Kind::Unplaced && can_block(w, 0);
      if (place(ids).kind != Kind::Whole || (!vocab_split && !placeable)) return false;
      const ValueId block_w = block(w, 0);
      ir::OriginGuard origin(*scope_, node.no_grad);
      set(node.outputs[0], ir::vocab_shard_embedding(out_, block_w, local(ids), n_, seeds_.group),
          kPartial);
      vocab_split_ids_.emplace(ids, g_.shape(w)[0]);
      return true;
    }
    if (node.op == OpKind::EmbeddingBackward) {
      const ValueId ids = node.inputs[0], dy = node.inputs[1];
      const int64_t vocab = node.attrs.i("num_embeddings");
      if (!vocab_split_ids_.count({ids, vocab}) || place(dy).kind != Kind::Whole) return false;
      ir::OriginGuard origin(*scope_, node.no_grad);
      set(node.outputs[0],
          ir::vocab_shard_embedding_backward(out_, local(ids), local(dy), vocab / n_, n_,
                                             seeds_.group),
          split_on(0));
      return true;
    }
    return false;
  }

  void collect_gradient(ValueId v) {
    if (!marked_.count(v) || waiting_.count(v) || place(v).kind != Kind::Partial) return;
    bucket_.push_back(v);
    waiting_.insert(v);
    bytes_ += g_.type(v).bytes();
    if (bytes_ >= seeds_.bucket_bytes) reduce_bucket();
  }

  void reduce_bucket() {
    if (bucket_.empty()) return;
    std::vector<ValueId> members;
    std::vector<TensorType> types;
    for (ValueId v : bucket_) {
      members.push_back(local(v));
      types.push_back(g_.type(v));
    }
    const std::vector<ValueId> summed = out_.add_node_from(
        {}, /*no_grad=*/true, OpKind::AllReduce, members, types,
        Attrs().set("average", false).set("group", seeds_.group).set(ir::kOverlapAttr, true));
    for (size_t k = 0; k < bucket_.size(); ++k) {
      set(bucket_[k], summed[k], kWhole);
      out_.mark_gradient(summed[k]);
      reduced_.insert(bucket_[k]);
    }
    bucket_.clear();
    waiting_.clear();
    bytes_ = 0;
  }

  const Graph& g_;
  const int n_;
  const SplitSeeds seeds_;
  std::vector<ValueId>& value_of_;  // value of g_ -> its value in out_ (as place_ says)
  std::vector<Place> place_;        // value of g_ -> how this rank holds it
  const std::unordered_set<ValueId> marked_;
  const std::string* scope_ = nullptr;  // of the node being rewritten
  Graph out_;
  std::unordered_map<ValueId, ValueId> gathered_of_;   // split value -> its gathered whole
  std::map<std::pair<ValueId, int>, ValueId> blocks_;  // (whole value, axis) -> block
  std::map<std::pair<ValueId, int64_t>, Counts> counts_;
  std::map<std::tuple<ValueId, ValueId, int64_t>, VocabLoss> vocab_losses_;
  std::set<std::pair<ValueId, int64_t>> vocab_split_ids_;  // (ids, V) looked up vocab-parallel
  int gathered_ = 0;
  std::unordered_set<ValueId> waiting_;  // marked gradients produced, not yet summed
  std::unordered_set<ValueId> reduced_;  // marked gradients summed in a bucket
  std::vector<ValueId> bucket_;          // the same as waiting_, in production order
  size_t bytes_ = 0;
};

}  // namespace

ir::Graph split_over_ranks(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                           const SplitSeeds& seeds, std::vector<ir::ValueId>& value_of,
                           SplitStats* stats) {
  SOLO_CHECK(seeds.ranks >= 1, "split: ranks = ", seeds.ranks, "; a plan has at least one rank");
  return Splitter(g, seeds, value_of).run(outputs, stats);
}

}  // namespace solo::compile
