// The op table: one row of facts per op, read by every layer that needs to know how an op
// behaves without knowing what it computes (the memory plan, the executor, the planner's cost
// model, the backends). Adding an op: a name in SOLO_OPS (core/op_kind.h), a row in
// core/op_info.cc, a builder in ir/ops.h, kernels and a VJP rule.
#pragma once
#include <array>
#include <cstdint>

#include "solo/core/op_kind.h"

namespace solo {

// How the planner's roofline prices an op (its formulas live in planner/op_cost.cc).
enum class OpCostClass : uint8_t {
  None,         // no kernel and no cost: graph inputs and views
  MemoryBound,  // elementwise-like: bytes read and written, one FLOP per output element
  MatMul,       // 2 M N K FLOPs
  Attention,    // the products of Q K^T and P V over B Hq T S D
  Collective,   // bytes put on a link
};

// Output `output` of the op may be written into the buffer of input `input` while the node
// runs: every backend's kernel reads each element of that input before writing the same
// element of the output.
struct InplacePair {
  int8_t output = -1;
  int8_t input = -1;
};

// How the data-parallel pass runs an op on this rank's rows of the batch (compile/
// data_parallel.h): a batch input is split along axis 0 over the ranks, and every value is
// then split along one axis, a partial sum over the ranks, or whole.
enum class SplitRule : uint8_t {
  Whole,      // no rule: split operands are gathered first and the op runs on whole tensors
  Pointwise,  // NumPy-broadcast elementwise: an operand's split axis is the outputs' axis
  Rows,       // acts within rows: the operands of row_inputs split on axis 0 make outputs
              // split on axis 0, or partial sums for those of row_sum_outputs
  Own,        // a rule of its own in the pass (reductions, views, matmul, the loss)
};

constexpr int8_t kAnyArity = -1;
constexpr int kMaxInplacePairs = 3;

struct OpInfo {
  OpKind op = OpKind::Input;
  const char* name = nullptr;  // as op_name(op)
  // Inputs a node of the op has, from min to max (max kAnyArity: no limit; optional
  // operands such as attention's key mask widen the range).
  int8_t min_inputs = 0, max_inputs = 0;
  int8_t outputs = 1;  // kAnyArity: one per input (a bucketed AllReduce)
  OpCostClass cost = OpCostClass::MemoryBound;
  // Output 0 is input 0's bytes under another shape: no kernel, no buffer of its own.
  bool view = false;
  // Host kernels only move or select elements (no arithmetic), so one kernel serves every
  // dtype and a host backend need not widen half precision to f32 for it.
  bool moves_elements = false;
  // Output element i is computed from element i of each operand of the output's shape and
  // from operands of one element (NumPy broadcasting of a scalar): the op runs unchanged on
  // matching blocks of its operands (the sharding passes' first layout rule).
  bool elementwise = false;
  // Run by the executor through a communicator instead of a backend kernel.
  bool collective = false;
  // May be started on the communicator and waited for later, overlapping later nodes (the
  // memory plan keeps its buffers live until the wait).
  bool async_start = false;
  // Must run even when none of its outputs is requested (a send returns only a token).
  bool side_effect = false;
  std::array<InplacePair, kMaxInplacePairs> inplace{};
  SplitRule split = SplitRule::Whole;
  uint8_t row_inputs = 0;       // SplitRule::Rows: bit i set = input i has the batch's rows
  uint8_t row_sum_outputs = 0;  // SplitRule::Rows: bit k set = output k sums over the rows
  // Acts on each attention head alone: operands [B, T, H, D] (and an lse [B, H, T]) may be
  // split along the heads (tensor parallelism's rule, tried after SplitRule's).
  bool per_head = false;
  // Rank-dependent kernel: it reads attr "rank", this rank's index in the communicator group
  // of the node's attr "group", which the executor sets on a copy of the node's attrs before
  // it calls the kernel (0 without a communicator for the group). The graph stays the same on
  // every rank, so one compiled program and its memory plan serve all of them. Such ops carry
  // attr "ranks" (the group size their shapes assume), checked against the communicator.
  // LocalShard, which only copies a block, is run by the executor itself (collective).
  bool group_rank = false;

  // A backend kernel computes it (not a graph input, a view or a collective).
  bool kernel() const { return op != OpKind::Input && !view && !collective; }
  // The input whose buffer output `output` may be written into (see InplacePair), or -1.
  int inplace_input(int output) const {
    for (const InplacePair& p : inplace)
      if (p.output >= 0 && p.output == output) return p.input;
    return -1;
  }
};

// The row of `op`; every op has one (checked when the table is built).
const OpInfo& op_info(OpKind op);

}  // namespace solo
