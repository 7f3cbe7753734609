// ZeRO-3 prefetch: a parameter held as blocks is gathered one block ahead of its readers, so
// that the gathers of layer k+1 run while layer k computes (on a communicator that overlaps).
//
// The zero pass puts each gather right before its first reader, in the reader's module scope
// and phase. This pass moves every gather of a block input (a parameter's block, or the cast
// of one under low_prec: they move with it) to the start of the run of nodes before the run
// that reads it, and marks it to overlap (ir::kOverlapAttr), so an asynchronous executor
// starts it there and waits right before its reader. A run is a maximal stretch of nodes of
// one block (module scope up to its numbered component, "model.layers.3") or other module
// scope ("lm_head"), in one phase (the no-grad mark); nodes without a scope (reductions the
// passes add, the optimizer) belong to the run they sit in. A gathered parameter lives about
// one block longer than without prefetch, and the memory plan counts it; compile() runs the
// pass only for plans whose collectives overlap (a host communicator would gain nothing).
#pragma once
#include <vector>

#include "solo/ir/graph.h"

namespace solo::compile {

// A copy of `g` in the new order; value_of maps each value of g to the copy's.
ir::Graph prefetch_gathers(const ir::Graph& g, std::vector<ir::ValueId>& value_of);

}  // namespace solo::compile
