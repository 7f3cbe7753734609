// ZeRO: the data-parallel state sharded over the ranks (DeepSpeed's stages 1-3, FSDP). A
// sharded value is a *block*: the global tensor flattened, rank r holding the elements
// [r k, (r+1) k), k = numel / ranks. A tensor whose element count the ranks do not divide
// stays whole (like DeepSpeed's small persistent parameters). The pass runs after the
// data-parallel one and carries the block layout through the graph by three rules:
//   - an elementwise op (OpInfo::elementwise) with a block operand runs on blocks; its other
//     operands of the output's shape are cut to this rank's block (a constant or a broadcast
//     scalar is rebuilt at block size instead, so it is never made whole);
//   - the sum of every element of a block is summed over the ranks (an AllReduce);
//   - any other reader gets the whole tensor, all-gathered before it.
// Which values start as blocks is what the stages add:
//   - zero >= 1: the AdamW update runs on blocks, so the optimizer states are created, updated
//     and kept as blocks (the new parameter is all-gathered right after its update);
//   - zero >= 2: each gradient (a partial sum on each rank) is reduce-scattered instead of being
//     in an all-reduced bucket, and kept as a block;
//   - zero = 3: new parameters stay blocks too. An input held as blocks (Graph::input's
//     `shards`: a parameter after its first step) is gathered before its first use in the
//     forward and again before its first use in the backward, so the whole tensor lives only
//     while one of them runs. A parameter still in a mapped checkpoint (Graph::input's
//     `mapped`) is read as this rank's block at the first step, so no rank ever holds the
//     whole of it. With low_prec, a parameter's low-precision copy is cast from
//     the block and gathered in low precision (distribute_low_prec_param).
// A requested output stays a block (1/ranks of its bytes) unless it is a new parameter under
// zero < 3; `output_shards` says which, so the tensor knows its storage is a block.
#pragma once
#include <unordered_map>
#include <vector>

#include "solo/ir/graph.h"

namespace solo::compile {

struct ShardingOptions {
  int ranks = 1;  // data-parallel ranks (communicator group 0)
  int zero = 0;
  bool low_prec = false;
};

// A copy of `g` (the data-parallel graph) with the block layout; value_of maps each value of
// g to the copy's, output_shards each requested output of the copy kept as a block to ranks.
ir::Graph shard_state(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                      const ShardingOptions& options, std::vector<ir::ValueId>& value_of,
                      std::unordered_map<ir::ValueId, int64_t>& output_shards);

// The step as a later step reads its inputs under a ZeRO stage: the AdamW moments from
// zero 1, and the parameters at zero 3, as blocks over `ranks` (those the ranks divide). The
// planner costs and sizes this steady step, not the first one, which reads whole inputs.
ir::Graph with_state_as_blocks(const ir::Graph& step, int ranks, int zero);

// True when `g` reads an input held as blocks (which any plan must gather or keep).
bool reads_blocks(const ir::Graph& g);

}  // namespace solo::compile
