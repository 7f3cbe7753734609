// Recomputation per block (activation checkpointing): the forward of each repeated block
// is replayed in the backward, so its activations live only while the block's forward runs
// and again while its backward runs, instead of from the forward to the backward.
//
// A block is a module scope ending in a number ("model.layers.3" for the nodes of
// "model.layers.3.mlp.up_proj"). A forward value (a node built with gradients on) that
// the backward reads is recomputed when it is made inside a block and read by no forward
// node outside it; the values that cross blocks (the residual stream between layers) are
// the checkpoints and stay. The block's replay is placed before its first backward reader,
// reading the checkpoints and the parameters, and is marked as backward (no-grad), which is
// also what ZeRO-3 gathers parameters by. Without randomness in the forward the replay
// computes the same bits, so the losses do not change.
#pragma once
#include <string>
#include <vector>

#include "solo/ir/graph.h"

namespace solo::compile {

// A copy of `g` with the replays; value_of maps each value of g to the copy's (the original
// forward values: the loss and other requested outputs are not replayed).
ir::Graph recompute_blocks(const ir::Graph& g, std::vector<ir::ValueId>& value_of);

// The block of a module scope: its longest prefix ending in a numeric component, or "".
std::string block_of_scope(const std::string& scope);

}  // namespace solo::compile
