#include "solo/autograd/autograd.h"
#include "solo/ir/ops.h"

namespace solo::autograd {

namespace {
// All-reduce of replicated values: each gradient passes through unchanged.
std::vector<ir::ValueId> all_reduce_vjp(ir::Graph&, const ir::Node&,
                                        const std::vector<ir::ValueId>& dout) {
  return dout;
}
// Each rank's x reached every rank: its gradient sums the ranks' gradients of its block.
std::vector<ir::ValueId> all_gather_vjp(ir::Graph& g, const ir::Node& node,
                                        const std::vector<ir::ValueId>& dout) {
  return {ir::reduce_scatter(g, dout[0], node.attrs.i("ranks"), 0, node.attrs.i("group"))};
}

// Each rank's x contributed its block r to rank r's sum: every rank needs all the blocks'
// gradients.
std::vector<ir::ValueId> reduce_scatter_vjp(ir::Graph& g, const ir::Node& node,
                                            const std::vector<ir::ValueId>& dout) {
  return {ir::all_gather(g, dout[0], node.attrs.i("ranks"), 0, node.attrs.i("group"))};
}
// A received tensor is a leaf of this rank's graph (its gradient goes back to the sender by
// an explicit send), and a send's token carries no gradient.
std::vector<ir::ValueId> recv_vjp(ir::Graph&, const ir::Node&, const std::vector<ir::ValueId>&) {
  return {};
}
std::vector<ir::ValueId> send_vjp(ir::Graph&, const ir::Node&, const std::vector<ir::ValueId>&) {
  return {ir::kNoValue};
}
}  // namespace

void register_collective_vjps(VjpTable& t) {
  t.set(OpKind::Recv, recv_vjp);
  t.set(OpKind::Send, send_vjp);
  t.set(OpKind::AllReduce, all_reduce_vjp);
  t.set(OpKind::AllGather, all_gather_vjp);
  t.set(OpKind::ReduceScatter, reduce_scatter_vjp);
}

}  // namespace solo::autograd
