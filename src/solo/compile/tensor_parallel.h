// The tensor-parallel pass (Megatron-LM's layout, found rather than written per model): the
// step runs on `ranks` ranks of communicator group 1, each holding a block of the large
// weights. The batch stays whole on every rank. A weight read first by a matmul with a whole
// activation is split along its output axis (column-parallel: q, k, v, gate, up, the LM
// head), one read by a matmul whose activation is split along the contracted axis along its
// input axis (row-parallel: o, down), whose partial sums are all-reduced where a whole value
// is next needed (the residual stream). Attention and RoPE run on this rank's heads (KV heads
// too, when the ranks divide them); the norms and what reads them stay whole. The embedding
// and the loss are vocabulary-parallel: the embedding's weight is split along the vocabulary
// (each rank looks up its ids, a partial sum), and the cross-entropy of the head's logits,
// split along the vocabulary, exchanges per-row logsumexps and label logits, not logits.
// The backward follows from the same rules: the gradient of a split weight is split like it,
// so are its moments and its update, and they stay so from step to step (output_axes).
// The data-parallel pass may run after this one on its graph (DP x TP).
#pragma once
#include <vector>

#include "solo/compile/splitter.h"
#include "solo/ir/graph.h"

namespace solo::compile {

// `stats`: the operands gathered for an op with no rule, and the requested outputs kept as
// blocks (value -> the axis of its block). `parameters_as_blocks`: the split parameters are
// bound as their blocks (a later step); otherwise whole, as a first step binds them, and each
// rank cuts its block out (SplitSeeds).
ir::Graph tensor_parallel(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int ranks,
                          std::vector<ir::ValueId>& value_of, SplitStats* stats,
                          bool parameters_as_blocks = false, bool half_sums = false);

}  // namespace solo::compile
