// The data-parallel pass: the step graph has the global batch's shapes (one logical device);
// each rank's graph runs on its rows of it. A batch input (Graph::input's `batch`) is split
// along axis 0 over the ranks, rank r holding rows [r*B/n, (r+1)*B/n), and the split is
// propagated node by node with the op table's SplitRule: every value becomes
//   split   - this rank's block along one axis (local shape),
//   partial - the global shape, summing to the one-device value over the ranks (a gradient
//             of a weight, computed from this rank's rows), or
//   whole   - the one-device value on every rank.
// A partial value is summed over the ranks (AllReduce, communicator group 0) where a reader
// needs it whole; the marked gradients (Graph::gradients) are summed in buckets of about
// 25 MiB, each one AllReduce node placed right after the last gradient it holds is produced,
// or earlier, before the first node that reads one of them, as DDP does. An op without a rule
// for its split operands gathers them first (correct, at the cost of the split). The mean
// cross-entropy of the rows is rewritten to the ranks' summed losses over their summed token
// counts, so the loss and every gradient equal one device's for any padding of the rows.
// Requested outputs are whole on every rank (the loss reads the global batch's loss).
#pragma once
#include <vector>

#include "solo/ir/graph.h"

namespace solo::compile {

constexpr size_t kGradientBucketBytes = size_t{25} << 20;

// Attr of a batch input in the rank's graph: the tensor bound to it is the whole batch, of
// which this rank reads its block of rows (rows [r*R, (r+1)*R), R the input's rows here).
inline constexpr const char* kRowShardsAttr = "row_shards";

struct DataParallelStats {
  int gathered = 0;  // split operands gathered for ops with no rule for them
};

// Rank's graph over `ranks` data-parallel ranks; value_of maps each value of g to the rank
// graph's (a requested output, or a gradient, to its whole value).
ir::Graph data_parallel(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int ranks,
                        std::vector<ir::ValueId>& value_of,
                        size_t bucket_bytes = kGradientBucketBytes,
                        DataParallelStats* stats = nullptr);

}  // namespace solo::compile
