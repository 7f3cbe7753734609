// The data-parallel pass: every rank runs the step on its rows of the batch, and the
// gradients marked in the graph (Graph::gradients) are averaged over the ranks, as DDP does:
// in buckets of about 25 MiB, each one AllReduce node (mean, communicator group 0) placed
// right after the last gradient it holds is produced, or earlier, before the first node that
// reads one of them. So clipping and the optimizer see the averaged gradients and every rank
// applies the same update. A requested scalar output computed from the batch (the loss) is
// averaged too, so reading it gives the global batch's mean on every rank (for a loss that
// is a mean over equal shares of the rows, as DDP assumes).
#pragma once
#include <vector>

#include "solo/ir/graph.h"

namespace solo::compile {

constexpr size_t kGradientBucketBytes = size_t{25} << 20;

// A copy of `g` with the reductions inserted; value_of maps each value of g to the copy's
// (a gradient, or a requested scalar of the batch, to its averaged value).
ir::Graph data_parallel(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                        std::vector<ir::ValueId>& value_of,
                        size_t bucket_bytes = kGradientBucketBytes);

}  // namespace solo::compile
