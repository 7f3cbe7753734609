#include "solo/ir/ops.h"

namespace solo::ir {

ValueId all_reduce(Graph& g, ValueId x, bool average) {
  const TensorType& t = g.type(x);
  check_operands(is_floating(t.dtype) || t.dtype == DType::I32 || t.dtype == DType::I64,
                 "AllReduce", "needs a float or integer tensor", {&t});
  return g.add(OpKind::AllReduce, {x}, t, Attrs().set("average", average));
}

}  // namespace solo::ir
