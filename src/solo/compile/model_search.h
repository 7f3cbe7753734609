// The planner's search for a model it can trace at any depth and batch (`solo plan`): the
// candidates add pipeline stages and micro-batches to dp x tp, and the search grows with the
// distinct pieces, not with layers x candidates.
//
// A training step is an embedding, L identical blocks and a head. Each candidate's per-rank
// program is compiled (compile.h, on threads) for one micro-batch at depths of 1 and 2
// blocks; everything the search measures of a program (its peak, resident bytes, FLOPs, time,
// bytes sent) grows by the same amount per block, so the values at the stage's depth (L / pp
// blocks) are read off the line through the two. Compiles are shared by every candidate that
// differs only in pp and micro-batches. Micro-batches accumulate gradients: the optimizer and
// the gradient reductions run once a step, the rest once per micro-batch. Pipeline stages run
// 1F1B: (m + pp - 1) micro-batch slots, the first stage holding pp micro-batches'
// activations, each stage costed as if it held the embedding and the head too (an upper
// bound), activations and their gradients sent between stages over the link they cross.
// These candidates are costed, not run: the runtime runs m = 1, pp = 1.
#pragma once
#include <functional>
#include <memory>

#include "solo/compile/search.h"

namespace solo::compile {

// A model's training step traced at `layers` blocks and a global batch of `batch` sequences,
// with the outputs a step requests.
struct TracedStep {
  std::shared_ptr<const ir::Graph> graph;
  std::vector<ir::ValueId> outputs;
};
using StepTracer = std::function<TracedStep(int layers, int64_t batch)>;

struct ModelSearchOptions {
  int layers = 1;        // the model's repeated blocks
  int64_t batch = 1;     // global batch, sequences
  SearchOptions search;  // devices, per host, memory, profile, threads, plans (steady is implied)
};

struct ModelCandidateSpace {
  CandidateSpace flavor;
  int layers = 1;
  int64_t batch = 1;
};

// dp x tp x pp (pp dividing the blocks, the stages outermost) with micro-batches of 1 or 2
// sequences a rank (m >= pp under a pipeline) or the whole batch of a rank, x ZeRO,
// recomputation and low_prec as candidate_plans.
std::vector<PlanSpec> model_candidate_plans(const ModelCandidateSpace& space);

// Traces (serially: tracing uses the front end's thread state) and searches. The step's
// mixed precision is read from the traced graphs.
SearchResult search_model(const StepTracer& trace, const ModelSearchOptions& options);

}  // namespace solo::compile
