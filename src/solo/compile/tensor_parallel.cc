#include "solo/compile/tensor_parallel.h"

namespace solo::compile {

ir::Graph tensor_parallel(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int ranks,
                          std::vector<ir::ValueId>& value_of, SplitStats* stats,
                          bool parameters_as_blocks, bool half_sums) {
  return split_over_ranks(g, outputs,
                          {.ranks = ranks,
                           .group = 1,
                           .split_batch = false,
                           .place_parameters = true,
                           .parameters_as_blocks = parameters_as_blocks,
                           .half_sums = half_sums},
                          value_of, stats);
}

}  // namespace solo::compile
