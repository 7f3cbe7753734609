// VJP rules of the fused nn ops. Each forward op has a fused Backward op (or, for Rope, is
// its own VJP), so the rules only wire inputs and gradients.
#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::ValueId;

namespace {

// dx = y * (dy - sum(dy * y)) along the axis, from the saved output y.
std::vector<ValueId> softmax_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  if (dout[0] == kNoValue) return {kNoValue};
  const int axis = static_cast<int>(n.attrs.i("axis"));
  return {ir::softmax_backward(g, n.outputs[0], dout[0], axis)};
}

std::vector<ValueId> rms_norm_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  if (dout[0] == kNoValue) return {kNoValue, kNoValue};
  const auto d = ir::rms_norm_backward(g, n.inputs[0], n.inputs[1], dout[0], n.attrs.f("eps"));
  return {d[0], d[1]};
}

std::vector<ValueId> layer_norm_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  if (dout[0] == kNoValue) return {kNoValue, kNoValue, kNoValue};
  const auto d = ir::layer_norm_backward(g, n.inputs[0], n.inputs[1], dout[0], n.attrs.f("eps"));
  return {d[0], d[1], d[2]};
}

// Rope is a rotation per (t, i) pair times a constant, so its VJP is the rotation by the
// opposite angle times the same constant.
std::vector<ValueId> rope_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  if (dout[0] == kNoValue) return {kNoValue};
  return {ir::rope(g, dout[0], rope_scaling_from_attrs(n.attrs), n.attrs.i("inverse") == 0)};
}

// Labels are integers: no gradient.
std::vector<ValueId> cross_entropy_vjp(Graph& g, const Node& n, const std::vector<ValueId>& dout) {
  if (dout[0] == kNoValue) return {kNoValue, kNoValue};
  return {
      ir::cross_entropy_backward(g, n.inputs[0], n.inputs[1], dout[0], n.attrs.i("ignore_index")),
      kNoValue};
}

}  // namespace

void register_nn_vjps(VjpTable& t) {
  t.set(OpKind::Softmax, softmax_vjp);
  t.set(OpKind::RmsNorm, rms_norm_vjp);
  t.set(OpKind::LayerNorm, layer_norm_vjp);
  t.set(OpKind::Rope, rope_vjp);
  t.set(OpKind::CrossEntropy, cross_entropy_vjp);
}

}  // namespace solo::autograd
