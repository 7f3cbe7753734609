#include <algorithm>

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

ValueId full(Graph& g, const Shape& shape, DType dtype, double value) {
  for (int64_t d : shape.dims())
    SOLO_CHECK(d >= 0, "full: negative dimension in shape ", shape.str());
  return g.add(OpKind::Full, {}, {shape, dtype}, Attrs().set("value", value));
}

namespace {
ValueId binary(Graph& g, OpKind op, ValueId a, ValueId b) {
  const TensorType &ta = g.type(a), &tb = g.type(b);
  check_operands(ta.dtype == tb.dtype, op_name(op), "dtypes differ", {&ta, &tb});
  // True division of integers would need a float result; ask for an explicit cast instead.
  check_operands(op != OpKind::Div || is_floating(ta.dtype), op_name(op),
                 "integer operands; cast to a float dtype first", {&ta, &tb});
  Shape out;
  check_operands(broadcast_shapes(ta.shape, tb.shape, &out), op_name(op), "shapes do not broadcast",
                 {&ta, &tb});
  return g.add(op, {a, b}, {out, ta.dtype});
}

// One-input op with the output type of its input; `float_only` rejects integer inputs.
ValueId unary(Graph& g, OpKind op, ValueId x, bool float_only, Attrs attrs = {}) {
  const TensorType& t = g.type(x);
  check_operands(!float_only || is_floating(t.dtype), op_name(op), "needs a float tensor", {&t});
  check_operands(t.dtype != DType::Bool, op_name(op), "does not take bool tensors", {&t});
  return g.add(op, {x}, t, std::move(attrs));
}

// Fused backward of a unary activation: x and dy have the same float type.
ValueId activation_backward(Graph& g, OpKind op, ValueId x, ValueId dy, Attrs attrs = {}) {
  const TensorType &tx = g.type(x), &tdy = g.type(dy);
  check_operands(tx.dtype == tdy.dtype && tx.shape == tdy.shape, op_name(op),
                 "x and dy must have the same shape and dtype", {&tx, &tdy});
  check_operands(is_floating(tx.dtype), op_name(op), "needs float tensors", {&tx, &tdy});
  return g.add(op, {x, dy}, tx, std::move(attrs));
}
}  // namespace

ValueId add(Graph& g, ValueId a, ValueId b) {
  return binary(g, OpKind::Add, a, b);
}
ValueId sub(Graph& g, ValueId a, ValueId b) {
  return binary(g, OpKind::Sub, a, b);
}
ValueId mul(Graph& g, ValueId a, ValueId b) {
  return binary(g, OpKind::Mul, a, b);
}
ValueId div(Graph& g, ValueId a, ValueId b) {
  return binary(g, OpKind::Div, a, b);
}
ValueId maximum(Graph& g, ValueId a, ValueId b) {
  return binary(g, OpKind::Maximum, a, b);
}
ValueId minimum(Graph& g, ValueId a, ValueId b) {
  return binary(g, OpKind::Minimum, a, b);
}
ValueId less(Graph& g, ValueId a, ValueId b) {
  const TensorType &ta = g.type(a), &tb = g.type(b);
  check_operands(ta.dtype == tb.dtype, "Less", "dtypes differ", {&ta, &tb});
  Shape out;
  check_operands(broadcast_shapes(ta.shape, tb.shape, &out), "Less", "shapes do not broadcast",
                 {&ta, &tb});
  return g.add(OpKind::Less, {a, b}, {out, DType::Bool});
}

ValueId where(Graph& g, ValueId cond, ValueId a, ValueId b) {
  const TensorType &tc = g.type(cond), &ta = g.type(a), &tb = g.type(b);
  check_operands(ta.dtype == tb.dtype, "Where", "a and b have different dtypes", {&tc, &ta, &tb});
  Shape ab, out;
  check_operands(broadcast_shapes(ta.shape, tb.shape, &ab) && broadcast_shapes(tc.shape, ab, &out),
                 "Where", "shapes do not broadcast", {&tc, &ta, &tb});
  return g.add(OpKind::Where, {cond, a, b}, {out, ta.dtype});
}

ValueId masked_fill(Graph& g, ValueId x, ValueId mask, double value) {
  // A scalar fill broadcasts against x, so no tensor of x's size is materialised.
  return where(g, mask, full(g, Shape{}, g.dtype(x), value), x);
}

ValueId add_scalar(Graph& g, ValueId x, double s) {
  return unary(g, OpKind::AddScalar, x, false, Attrs().set("value", s));
}
ValueId mul_scalar(Graph& g, ValueId x, double s) {
  return unary(g, OpKind::MulScalar, x, false, Attrs().set("value", s));
}
ValueId pow_scalar(Graph& g, ValueId x, double p) {
  return unary(g, OpKind::PowScalar, x, true, Attrs().set("value", p));
}
ValueId neg(Graph& g, ValueId x) {
  return unary(g, OpKind::Neg, x, false);
}
ValueId exp(Graph& g, ValueId x) {
  return unary(g, OpKind::Exp, x, true);
}
ValueId log(Graph& g, ValueId x) {
  return unary(g, OpKind::Log, x, true);
}
ValueId sqrt(Graph& g, ValueId x) {
  return unary(g, OpKind::Sqrt, x, true);
}
ValueId rsqrt(Graph& g, ValueId x) {
  return unary(g, OpKind::Rsqrt, x, true);
}
ValueId silu(Graph& g, ValueId x) {
  return unary(g, OpKind::Silu, x, true);
}
ValueId gelu(Graph& g, ValueId x, bool tanh) {
  return unary(g, OpKind::Gelu, x, true, Attrs().set("tanh", tanh));
}
ValueId silu_backward(Graph& g, ValueId x, ValueId dy) {
  return activation_backward(g, OpKind::SiluBackward, x, dy);
}
ValueId gelu_backward(Graph& g, ValueId x, ValueId dy, bool tanh) {
  return activation_backward(g, OpKind::GeluBackward, x, dy, Attrs().set("tanh", tanh));
}

ValueId swiglu(Graph& g, ValueId gate, ValueId up) {
  const TensorType &tg = g.type(gate), &tu = g.type(up);
  check_operands(tg.dtype == tu.dtype && tg.shape == tu.shape, "Swiglu",
                 "gate and up must have the same shape and dtype", {&tg, &tu});
  check_operands(is_floating(tg.dtype), "Swiglu", "needs float tensors", {&tg, &tu});
  return g.add(OpKind::Swiglu, {gate, up}, tg);
}
std::vector<ValueId> swiglu_backward(Graph& g, ValueId gate, ValueId up, ValueId dy) {
  const TensorType &tg = g.type(gate), &tu = g.type(up), &tdy = g.type(dy);
  for (const TensorType* t : {&tu, &tdy})
    check_operands(t->dtype == tg.dtype && t->shape == tg.shape, "SwigluBackward",
                   "gate, up and dy must have the same shape and dtype", {&tg, &tu, &tdy});
  check_operands(is_floating(tg.dtype), "SwigluBackward", "needs float tensors", {&tg, &tu, &tdy});
  return g.add_node(OpKind::SwigluBackward, {gate, up, dy}, {tg, tg});
}

ValueId cast(Graph& g, ValueId x, DType to) {
  if (g.dtype(x) == to) return x;  // like PyTorch's .to(): no copy for the same dtype
  return g.add(OpKind::Cast, {x}, {g.shape(x), to}, Attrs().set("dtype", static_cast<int64_t>(to)));
}

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
  check_operands(op != OpKind::Mean || is_floating(g.dtype(x)), op_name(op), "needs a float tensor",
                 {&g.type(x)});
  check_operands(g.dtype(x) != DType::Bool, op_name(op), "does not take bool tensors",
                 {&g.type(x)});
  axes = reduction_axes(op_name(op), s, std::move(axes));
  std::vector<int64_t> out;
  for (int i = 0; i < s.rank(); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
    if (!reduced)
      out.push_back(s[i]);
    else if (keepdim)
      out.push_back(1);
  }
  return g.add(op, {x}, {Shape(out), g.dtype(x)},
               Attrs().set("axes", axes).set("keepdim", keepdim));
}
}  // namespace

ValueId sum(Graph& g, ValueId x, std::vector<int64_t> axes, bool keepdim) {
  return reduce(g, OpKind::Sum, x, std::move(axes), keepdim);
}
ValueId mean(Graph& g, ValueId x, std::vector<int64_t> axes, bool keepdim) {
  return reduce(g, OpKind::Mean, x, std::move(axes), keepdim);
}

ValueId broadcast_to(Graph& g, ValueId x, const Shape& shape) {
  Shape out;
  const TensorType target{shape, g.dtype(x)};
  check_operands(broadcast_shapes(g.shape(x), shape, &out) && out == shape, "BroadcastTo",
                 "cannot broadcast to " + shape.str(), {&g.type(x), &target});
  if (g.shape(x) == shape) return x;
  return g.add(OpKind::BroadcastTo, {x}, {shape, g.dtype(x)}, Attrs().set("shape", shape.dims()));
}

ValueId sum_to(Graph& g, ValueId x, const Shape& target) {
  // Copies: adding the sum node may move the graph's values, which `target` may refer to.
  const Shape shape = target, s = g.shape(x);
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
