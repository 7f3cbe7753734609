#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::ValueId;

namespace {

using Grads = std::vector<ValueId>;

// A copy of v's shape. g.shape() refers into the graph's value list, which every added node
// may reallocate, so a shape passed next to a builder call must not be a reference.
Shape shape_of(const Graph& g, ValueId v) {
  return g.shape(v);
}

// d(a + b) = (dy, dy), each summed back to its operand's shape.
Grads add_vjp(Graph& g, const Node& n, const Grads& dout) {
  const ValueId dy = dout[0];
  return {ir::sum_to(g, dy, shape_of(g, n.inputs[0])), ir::sum_to(g, dy, shape_of(g, n.inputs[1]))};
}

// d(a - b) = (dy, -dy)
Grads sub_vjp(Graph& g, const Node& n, const Grads& dout) {
  const ValueId dy = dout[0];
  return {ir::sum_to(g, dy, shape_of(g, n.inputs[0])),
          ir::sum_to(g, ir::neg(g, dy), shape_of(g, n.inputs[1]))};
}

// d min(a, b): dy flows to a where a <= b, else to b (ties go to a). max mirrors it.
Grads select_vjp(Graph& g, const Node& n, const Grads& dout, bool is_min) {
  const ValueId a = n.inputs[0], b = n.inputs[1], dy = dout[0];
  const Shape sa = shape_of(g, a), sb = shape_of(g, b);
  const ValueId to_b = is_min ? ir::less(g, b, a) : ir::less(g, a, b);
  const ValueId zero = ir::full(g, {}, g.dtype(dy), 0.0);
  return {ir::sum_to(g, ir::where(g, to_b, zero, dy), sa),
          ir::sum_to(g, ir::where(g, to_b, dy, zero), sb)};
}
Grads minimum_vjp(Graph& g, const Node& n, const Grads& dout) {
  return select_vjp(g, n, dout, true);
}
Grads maximum_vjp(Graph& g, const Node& n, const Grads& dout) {
  return select_vjp(g, n, dout, false);
}

// d(a * b) = (dy * b, dy * a), summed back to each operand's shape.
Grads mul_vjp(Graph& g, const Node& n, const Grads& dout) {
  const ValueId a = n.inputs[0], b = n.inputs[1], dy = dout[0];
  return {ir::sum_to(g, ir::mul(g, dy, b), shape_of(g, a)),
          ir::sum_to(g, ir::mul(g, dy, a), shape_of(g, b))};
}

// y = a / b: da = dy / b, db = -dy * a / b^2 = -(dy * y) / b (reuses the output y).
Grads div_vjp(Graph& g, const Node& n, const Grads& dout) {
  const ValueId a = n.inputs[0], b = n.inputs[1], y = n.outputs[0], dy = dout[0];
  const ValueId da = ir::div(g, dy, b);
  const ValueId db = ir::neg(g, ir::div(g, ir::mul(g, dy, y), b));
  return {ir::sum_to(g, da, shape_of(g, a)), ir::sum_to(g, db, shape_of(g, b))};
}

// where(c, a, b): dy flows to a where c holds and to b elsewhere; c gets none.
Grads where_vjp(Graph& g, const Node& n, const Grads& dout) {
  const ValueId c = n.inputs[0], a = n.inputs[1], b = n.inputs[2], dy = dout[0];
  const ValueId zero = ir::full(g, Shape{}, g.dtype(dy), 0.0);
  return {kNoValue, ir::sum_to(g, ir::where(g, c, dy, zero), shape_of(g, a)),
          ir::sum_to(g, ir::where(g, c, zero, dy), shape_of(g, b))};
}

Grads add_scalar_vjp(Graph&, const Node&, const Grads& dout) {
  return {dout[0]};
}

Grads mul_scalar_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::mul_scalar(g, dout[0], n.attrs.f("value"))};
}

// d(x^p) = p x^(p-1) dy; p = 0 is a constant and p = 1 the identity.
Grads pow_scalar_vjp(Graph& g, const Node& n, const Grads& dout) {
  const double p = n.attrs.f("value");
  const ValueId x = n.inputs[0], dy = dout[0];
  if (p == 0.0) return {ir::full(g, shape_of(g, x), g.dtype(x), 0.0)};
  if (p == 1.0) return {dy};
  const ValueId slope = p == 2.0 ? x : ir::pow_scalar(g, x, p - 1.0);
  return {ir::mul(g, dy, ir::mul_scalar(g, slope, p))};
}

Grads neg_vjp(Graph& g, const Node&, const Grads& dout) {
  return {ir::neg(g, dout[0])};
}

// d(e^x) = e^x dy: reuses the output.
Grads exp_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::mul(g, dout[0], n.outputs[0])};
}

Grads log_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::div(g, dout[0], n.inputs[0])};
}

// d(sqrt x) = dy / (2 sqrt x) = 0.5 dy / y
Grads sqrt_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::div(g, ir::mul_scalar(g, dout[0], 0.5), n.outputs[0])};
}

// d(x^-1/2) = -1/2 x^-3/2 dy = -1/2 y^3 dy
Grads rsqrt_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::mul(g, dout[0], ir::mul_scalar(g, ir::pow_scalar(g, n.outputs[0], 3.0), -0.5))};
}

// The activations have fused backward ops, so the backward pass is one kernel.
Grads swiglu_vjp(Graph& g, const Node& n, const Grads& dout) {
  if (dout[0] == kNoValue) return {kNoValue, kNoValue};
  return ir::swiglu_backward(g, n.inputs[0], n.inputs[1], dout[0]);
}

Grads silu_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::silu_backward(g, n.inputs[0], dout[0])};
}

Grads gelu_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::gelu_backward(g, n.inputs[0], dout[0], n.attrs.i("tanh") != 0)};
}

// ---- double backward: the backward ops are linear in dy, so d/d(dy) is the backward op
// itself applied to the incoming gradient, and d/dx needs f''(x) built from primitives.

// sigmoid(x) = (1 + e^-x)^-1
ValueId sigmoid(Graph& g, ValueId x) {
  return ir::pow_scalar(g, ir::add_scalar(g, ir::exp(g, ir::neg(g, x)), 1.0), -1.0);
}

// silu''(x) = s (1 - s) (2 + x (1 - 2 s)), s = sigmoid(x)
Grads silu_backward_vjp(Graph& g, const Node& n, const Grads& dout) {
  const ValueId x = n.inputs[0], dy = n.inputs[1], gy = dout[0];
  const ValueId s = sigmoid(g, x);
  const ValueId s1 = ir::mul(g, s, ir::add_scalar(g, ir::neg(g, s), 1.0));
  const ValueId rest =
      ir::add_scalar(g, ir::mul(g, x, ir::add_scalar(g, ir::mul_scalar(g, s, -2.0), 1.0)), 2.0);
  const ValueId f2 = ir::mul(g, s1, rest);
  return {ir::mul(g, ir::mul(g, gy, dy), f2), ir::silu_backward(g, x, gy)};
}

// Exact: gelu''(x) = phi(x) (2 - x^2). Tanh form: with u = k (x + c x^3), t = tanh u,
// t' = (1 - t^2) u', gelu' = (1 + t) / 2 + x t' / 2, so gelu'' = t' + x t'' / 2 with
// t'' = (1 - t^2) (u'' - 2 t u'^2).
Grads gelu_backward_vjp(Graph& g, const Node& n, const Grads& dout) {
  const ValueId x = n.inputs[0], dy = n.inputs[1], gy = dout[0];
  const bool tanh = n.attrs.i("tanh") != 0;
  const ValueId x2 = ir::mul(g, x, x);
  ValueId f2;
  if (!tanh) {
    const ValueId pdf =
        ir::mul_scalar(g, ir::exp(g, ir::mul_scalar(g, x2, -0.5)), 0.3989422804014327);
    f2 = ir::mul(g, pdf, ir::add_scalar(g, ir::neg(g, x2), 2.0));
  } else {
    const double k = 0.7978845608028654, c = 0.044715;
    const ValueId u =
        ir::mul_scalar(g, ir::mul(g, x, ir::add_scalar(g, ir::mul_scalar(g, x2, c), 1.0)), k);
    const ValueId t =
        ir::add_scalar(g, ir::mul_scalar(g, sigmoid(g, ir::mul_scalar(g, u, 2.0)), 2.0), -1.0);
    const ValueId du = ir::add_scalar(g, ir::mul_scalar(g, x2, 3.0 * c * k), k);
    const ValueId ddu = ir::mul_scalar(g, x, 6.0 * c * k);
    const ValueId one_minus_t2 = ir::add_scalar(g, ir::neg(g, ir::mul(g, t, t)), 1.0);
    const ValueId dt = ir::mul(g, one_minus_t2, du);
    const ValueId ddt =
        ir::mul(g, one_minus_t2,
                ir::sub(g, ddu, ir::mul_scalar(g, ir::mul(g, t, ir::mul(g, du, du)), 2.0)));
    f2 = ir::add(g, dt, ir::mul_scalar(g, ir::mul(g, x, ddt), 0.5));
  }
  return {ir::mul(g, ir::mul(g, gy, dy), f2), ir::gelu_backward(g, x, gy, tanh)};
}

// A cast passes the gradient back in the input's dtype; integers carry no gradient.
Grads cast_vjp(Graph& g, const Node& n, const Grads& dout) {
  const DType in = g.dtype(n.inputs[0]);
  if (!is_floating(in) || !is_floating(g.dtype(n.outputs[0]))) return {kNoValue};
  return {ir::cast(g, dout[0], in)};
}

// dy with the reduced axes restored as size-1 dims, ready to broadcast over the input.
ValueId restore_reduced_dims(Graph& g, const Node& n, ValueId dy) {
  std::vector<int64_t> kept = shape_of(g, n.inputs[0]).dims();
  for (int64_t a : n.attrs.ints("axes")) kept[static_cast<size_t>(a)] = 1;
  return ir::reshape(g, dy, Shape(kept));
}

// The gradient of a sum is dy broadcast back over the reduced axes.
Grads sum_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::broadcast_to(g, restore_reduced_dims(g, n, dout[0]), shape_of(g, n.inputs[0]))};
}

// Mean = sum / count: scale the (small) dy before broadcasting it.
Grads mean_vjp(Graph& g, const Node& n, const Grads& dout) {
  const Shape in = shape_of(g, n.inputs[0]);
  int64_t count = 1;
  for (int64_t a : n.attrs.ints("axes")) count *= in[static_cast<int>(a)];
  const ValueId scaled = ir::mul_scalar(g, dout[0], 1.0 / static_cast<double>(count));
  return {ir::broadcast_to(g, restore_reduced_dims(g, n, scaled), in)};
}

Grads broadcast_to_vjp(Graph& g, const Node& n, const Grads& dout) {
  return {ir::sum_to(g, dout[0], shape_of(g, n.inputs[0]))};
}

}  // namespace

void register_elementwise_vjps(VjpTable& t) {
  t.set(OpKind::Add, add_vjp);
  t.set(OpKind::Sub, sub_vjp);
  t.set(OpKind::Minimum, minimum_vjp);
  t.set(OpKind::Maximum, maximum_vjp);
  t.set(OpKind::Mul, mul_vjp);
  t.set(OpKind::Div, div_vjp);
  t.set(OpKind::Where, where_vjp);
  t.set(OpKind::AddScalar, add_scalar_vjp);
  t.set(OpKind::MulScalar, mul_scalar_vjp);
  t.set(OpKind::PowScalar, pow_scalar_vjp);
  t.set(OpKind::Neg, neg_vjp);
  t.set(OpKind::Exp, exp_vjp);
  t.set(OpKind::Log, log_vjp);
  t.set(OpKind::Sqrt, sqrt_vjp);
  t.set(OpKind::Rsqrt, rsqrt_vjp);
  t.set(OpKind::Silu, silu_vjp);
  t.set(OpKind::Swiglu, swiglu_vjp);
  t.set(OpKind::Gelu, gelu_vjp);
  t.set(OpKind::SiluBackward, silu_backward_vjp);
  t.set(OpKind::GeluBackward, gelu_backward_vjp);
  t.set(OpKind::Cast, cast_vjp);
  t.set(OpKind::Sum, sum_vjp);
  t.set(OpKind::Mean, mean_vjp);
  t.set(OpKind::BroadcastTo, broadcast_to_vjp);
}

}  // namespace solo::autograd
