#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

namespace {
// All-reduce of replicated values: each gradient passes through unchanged.
std::vector<ir::ValueId> all_reduce_vjp(ir::Graph&, const ir::Node&,
                                        const std::vector<ir::ValueId>& dout) {
  return dout;
}
}  // namespace

void register_collective_vjps(VjpTable& t) {
  t.set(OpKind::AllReduce, all_reduce_vjp);
}

}  // namespace solo::autograd
