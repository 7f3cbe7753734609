#include "solo/compile/data_parallel.h"

#include "solo/compile/splitter.h"

namespace solo::compile {

ir::Graph data_parallel(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int ranks,
                        std::vector<ir::ValueId>& value_of, size_t bucket_bytes,
                        DataParallelStats* stats) {
  SplitStats split;
  ir::Graph out = split_over_ranks(
      g, outputs, {.ranks = ranks, .group = 0, .split_batch = true, .bucket_bytes = bucket_bytes},
      value_of, &split);
  if (stats) stats->gathered = split.gathered;
  return out;
}

}  // namespace solo::compile
