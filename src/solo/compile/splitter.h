// The split propagation the data- and tensor-parallel passes share: seeds are split over the
// ranks of one communicator group, and the split is carried node by node with the op table's
// SplitRule, every value becoming this rank's block along one axis, a partial sum over the
// ranks, or whole (data_parallel.h explains the three). What differs between the passes is
// the seeds and where their partial sums go:
//   - data parallelism splits the batch inputs along their rows and sums the marked
//     gradients in buckets (group 0); requested outputs are whole;
//   - tensor parallelism (tensor_parallel.h) leaves the batch whole and places each parameter
//     when its first reader needs it: a matmul with a whole activation splits the weight's
//     output axis (column-parallel), one with an activation split along its contracted axis
//     splits the weight's input axis (row-parallel, a partial sum), an embedding splits its
//     weight along the vocabulary (a partial sum of the ranks' lookups); a parameter no such
//     reader places stays whole. Logits split along the vocabulary meet a vocabulary-parallel
//     cross-entropy (no rank gathers them). Gradients and updates of split parameters stay
//     split, and so do those requested outputs (output_axes).
#pragma once
#include <unordered_map>
#include <vector>

#include "solo/ir/graph.h"

namespace solo::compile {

struct SplitSeeds {
  int ranks = 1;
  int64_t group = 0;              // communicator group of the collectives the pass adds
  bool split_batch = true;        // data parallelism: batch inputs split along axis 0
  bool place_parameters = false;  // tensor parallelism: parameters split at first use
  // Tensor parallelism: a parameter placed split is bound as its block (a later step's, as the
  // plan left it); otherwise the whole tensor is bound and each rank cuts its block out, unless
  // the input is held as a block already (Graph::input's `held`) or still mapped file bytes.
  bool parameters_as_blocks = false;
  bool half_sums = false;  // partial sums of 16-bit floats are summed as they are (program.h)
  size_t bucket_bytes = 25 << 20;  // of the marked gradients' all-reduces
};

struct SplitStats {
  int gathered = 0;  // split operands gathered for ops with no rule for them
  // Requested outputs of the rank's graph kept split: value -> the axis of its block.
  std::unordered_map<ir::ValueId, int> output_axes;
};

ir::Graph split_over_ranks(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                           const SplitSeeds& seeds, std::vector<ir::ValueId>& value_of,
                           SplitStats* stats = nullptr);

// Attrs of an input a tensor-parallel pass split: the tensor bound to it is this rank's block
// along `kSplitAxisAttr` of the whole one, over `kSplitRanksAttr` ranks.
inline constexpr const char* kSplitAxisAttr = "split_axis";
inline constexpr const char* kSplitRanksAttr = "split_ranks";

}  // namespace solo::compile
