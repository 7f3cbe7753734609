// The pipeline pass: a rank's graph (after the tensor- and data-parallel passes and ZeRO, so
// every value already has this rank's shape) is cut into `stages` stages, and stage s's
// ranks run only its part. The cut follows module scopes: the step's units in forward order
// (what comes before the first block, each block "model.layers.N", what comes after) are
// dealt out in contiguous runs balanced by their FLOPs, forward and backward together (the
// backward of a node carries its scope, autograd.cc). A node without a scope of a unit runs
// where its largest operand is (a loss, the optimizer update of a gradient, a clip
// coefficient's product); one computed from inputs alone (labels, masks, constants, a
// parameter's own cast) runs on every stage that reads it; a grouped collective with operands
// of several stages (a gradient bucket) becomes one per stage.
//
// A value made on one stage and read on another is sent right after it is made (Send and
// Recv on communicator group 2, the pipeline axis, whose rank is the stage). Every stage keeps
// the rank graph's order, so all ranks follow one global order of their transfers and
// collectives and none can wait on another in a cycle. Requested outputs: the parameters, the
// optimizer states and gradients stay on their stage (`output_stage`); any
// other (the loss) is sent from its stage to every other at the end, so each rank reads it.
#pragma once
#include <unordered_map>
#include <vector>

#include "solo/ir/graph.h"

namespace solo::compile {

// Group of the pipeline's point-to-point transfers; a rank's index in it is its stage.
inline constexpr int64_t kPipelineGroup = 2;

struct PipelineStats {
  // Requested outputs of the rank graph that live on one stage (the state): value -> that
  // stage, this one or another.
  std::unordered_map<ir::ValueId, int> output_stage;
  int transfers = 0;  // values sent between stages (this stage's and the others')
  // This stage's send tokens: requesting them is what runs the sends (ir::send).
  std::vector<ir::ValueId> sends;
};

// Stage `stage` of `stages` of the rank graph g; value_of maps each value of g to the stage
// graph's (kNoValue where the stage has none). Throws when the step does not cut into that
// many stages (fewer blocks than stages, a parameter read on two stages).
ir::Graph pipeline_stage(const ir::Graph& g, const std::vector<ir::ValueId>& outputs, int stages,
                         int stage, std::vector<ir::ValueId>& value_of,
                         PipelineStats* stats = nullptr);

}  // namespace solo::compile
