#include <algorithm>

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

ValueId full(Graph& g, const Shape& shape, DType dtype, double value) {
  for (int64_t d : shape.dims()) SOLO_CHECK(d >= 0, "full: negative dimension in shape ", shape.str());
  return g.add(OpKind::Full, {}, {shape, dtype}, Attrs().set("value", value));
}

namespace {
ValueId binary(Graph& g, OpKind op, ValueId a, ValueId b) {
  const TensorType &ta = g.type(a), &tb = g.type(b);
  check_operands(ta.dtype == tb.dtype, op_name(op), "dtypes differ", {&ta, &tb});
  Shape out;
  check_operands(broadcast_shapes(ta.shape, tb.shape, &out), op_name(op),
                 "shapes do not broadcast", {&ta, &tb});
  return g.add(op, {a, b}, {out, ta.dtype});
}
}  // namespace

ValueId add(Graph& g, ValueId a, ValueId b) { return binary(g, OpKind::Add, a, b); }
ValueId mul(Graph& g, ValueId a, ValueId b) { return binary(g, OpKind::Mul, a, b); }

namespace {
// Normalised, sorted, unique axes; empty means all.
std::vector<int64_t> reduction_axes(const char* op, const Shape& s, std::vector<int64_t> axes) {
  if (axes.empty())
    for (int i = 0; i < s.rank(); ++i) axes.push_back(i);
  for (int64_t& a : axes) a = normalize_axis(static_cast<int>(a), s.rank(), op);
  std::sort(axes.begin(), axes.end());
  SOLO_CHECK(std::adjacent_find(axes.begin(), axes.end()) == axes.end(), op,
             ": an axis is repeated in the reduction axes of a tensor of shape ", s.str());
  return axes;
}

ValueId reduce(Graph& g, OpKind op, ValueId x, std::vector<int64_t> axes, bool keepdim) {
  const Shape& s = g.shape(x);
  axes = reduction_axes(op_name(op), s, std::move(axes));
  std::vector<int64_t> out;
  for (int i = 0; i < s.rank(); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
    if (!reduced) out.push_back(s[i]);
    else if (keepdim) out.push_back(1);
  }
  return g.add(op, {x}, {Shape(out), g.dtype(x)},
               Attrs().set("axes", axes).set("keepdim", keepdim));
}
}  // namespace

ValueId sum(Graph& g, ValueId x, std::vector<int64_t> axes, bool keepdim) {
  return reduce(g, OpKind::Sum, x, std::move(axes), keepdim);
}

ValueId broadcast_to(Graph& g, ValueId x, const Shape& shape) {
  Shape out;
  const TensorType target{shape, g.dtype(x)};
  check_operands(broadcast_shapes(g.shape(x), shape, &out) && out == shape, "BroadcastTo",
                 "cannot broadcast to " + shape.str(), {&g.type(x), &target});
  if (g.shape(x) == shape) return x;
  return g.add(OpKind::BroadcastTo, {x}, {shape, g.dtype(x)}, Attrs().set("shape", shape.dims()));
}

ValueId sum_to(Graph& g, ValueId x, const Shape& shape) {
  const Shape& s = g.shape(x);
  if (s == shape) return x;
  Shape check;
  SOLO_CHECK(broadcast_shapes(shape, s, &check) && check == s, "sum_to: ", s.str(),
             " is not a broadcast of ", shape.str());
  std::vector<int64_t> axes;
  const int lead = s.rank() - shape.rank();
  for (int i = 0; i < s.rank(); ++i)
    if (i < lead || (shape[i - lead] == 1 && s[i] != 1)) axes.push_back(i);
  return reshape(g, sum(g, x, axes, false), shape);
}

}  // namespace solo::ir
