#include "solo/ir/ops.h"

namespace solo::ir {

std::vector<ValueId> adamw_update(Graph& g, ValueId p, ValueId grad, ValueId m, ValueId v,
                                  ValueId lr, ValueId bias1, ValueId bias2, double beta1,
                                  double beta2, double eps, double weight_decay) {
  const TensorType &tp = g.type(p), &tg = g.type(grad), &tm = g.type(m), &tv = g.type(v);
  check_operands(is_floating(tp.dtype), "AdamWUpdate", "the parameter must be a float tensor",
                 {&tp});
  for (const TensorType* t : {&tg, &tm, &tv})
    check_operands(t->shape == tp.shape && t->dtype == tp.dtype, "AdamWUpdate",
                   "p, grad, m and v must have one shape and dtype", {&tp, &tg, &tm, &tv});
  for (ValueId s : {lr, bias1, bias2}) {
    const TensorType& ts = g.type(s);
    check_operands(ts.shape.numel() == 1 && ts.dtype == DType::F32, "AdamWUpdate",
                   "lr and bias corrections must be one-element f32 tensors", {&ts});
  }
  return g.add_node(OpKind::AdamWUpdate, {p, grad, m, v, lr, bias1, bias2}, {tp, tp, tp},
                    Attrs()
                        .set("beta1", beta1)
                        .set("beta2", beta2)
                        .set("eps", eps)
                        .set("weight_decay", weight_decay));
}

}  // namespace solo::ir
