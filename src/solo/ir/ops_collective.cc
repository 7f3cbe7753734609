#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

ValueId all_reduce(Graph& g, ValueId x, bool average) {
  return all_reduce(g, std::vector<ValueId>{x}, average)[0];
}

std::vector<ValueId> all_reduce(Graph& g, const std::vector<ValueId>& xs, bool average) {
  SOLO_CHECK(!xs.empty(), "AllReduce: no tensors given");
  std::vector<TensorType> types;
  for (ValueId x : xs) {
    const TensorType& t = g.type(x);
    check_operands(is_floating(t.dtype) || t.dtype == DType::I32 || t.dtype == DType::I64,
                   "AllReduce", "needs float or integer tensors", {&t});
    types.push_back(t);
  }
  return g.add_node(OpKind::AllReduce, xs, types, Attrs().set("average", average));
}

}  // namespace solo::ir
