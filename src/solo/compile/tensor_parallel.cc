#include "solo/compile/tensor_parallel.h"

#include "solo/compile/splitter.h"

namespace solo::compile {

ir::Graph tensor_parallel(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int ranks,
                          std::vector<ir::ValueId>& value_of, TensorParallelResult* result) {
  SplitStats stats;
  ir::Graph out = split_over_ranks(
      g, outputs, {.ranks = ranks, .group = 1, .split_batch = false, .place_parameters = true},
      value_of, &stats);
  if (result) {
    result->gathered = stats.gathered;
    result->output_axes = std::move(stats.output_axes);
  }
  return out;
}

}  // namespace solo::compile
