// The compile layer: a step graph (one logical device) and a plan in, the program one rank
// runs out. Passes rewrite the graph (data_parallel.h, then zero.h; recomputation, layouts
// and pipeline stages join them), then the static memory plan is made for the rewritten graph,
// so what the planner predicts is what the executor allocates. Pure: nothing here reads
// process-wide state, so many candidates can compile at once on a thread pool.
#pragma once
#include <memory>
#include <unordered_map>
#include <vector>

#include "solo/compile/plan_spec.h"
#include "solo/ir/graph.h"
#include "solo/runtime/memory_plan.h"

namespace solo::compile {

struct CompileOptions {
  // The data-parallel communicator runs AllReduce while later nodes compute (NCCL), so the
  // memory plan starts the gradient reductions early and keeps their buffers live.
  bool async_collectives = false;
  // Compile a step after the first: the state is read as the plan leaves it (ZeRO's blocks,
  // zero.h's with_state_as_blocks applied after tensor parallelism has split it).
  bool state_as_blocks = false;
  // The communicators sum 16-bit floats (NCCL): a tensor-parallel partial sum made in bf16
  // is all-reduced in bf16 before it is widened, as Megatron-LM does (half the bytes; each
  // rank's sum is rounded once more than one device's). MPI sums f32 only.
  bool half_sums = false;
  // The pipeline stage whose program this is (plan.pp > 1; a rank's stage is its index in
  // the pipeline group, compile/pipeline.h).
  int stage = 0;
};

// Bytes a rank holds from one step to the next (requested outputs of the AdamW updates:
// parameters, their gradients, the moments), as ZeRO shards them.
struct ResidentBytes {
  size_t parameters = 0, gradients = 0, optimizer_states = 0;
  size_t total() const { return parameters + gradients + optimizer_states; }
};

struct Program {
  PlanSpec plan;
  std::shared_ptr<const ir::Graph> graph;  // this rank's graph
  std::vector<ir::ValueId> value_of;  // step-graph value -> its value in `graph` (kNoValue: none)
  runtime::MemoryPlan memory;         // planned for `graph`
  // Requested outputs of `graph` kept as this rank's block over that many ranks (zero.h);
  // every other output is the whole tensor.
  std::unordered_map<ir::ValueId, int64_t> output_shards;
  // Requested outputs of `graph` kept as this rank's block along an axis over the plan's tp
  // ranks (tensor_parallel.h); a block in output_shards too is a ZeRO block of that block.
  std::unordered_map<ir::ValueId, int> output_axes;
  ResidentBytes resident;
  // Split operands the data-parallel pass gathered for an op with no rule for them (0 for the
  // models of solo/models: each rank computes on its rows only).
  int batch_gathers = 0;
  // Split operands the tensor-parallel pass gathered for an op with no rule for them.
  int tp_gathers = 0;
  // Requested outputs (step values) that live on one pipeline stage (parameters, their
  // gradients and moments): value -> that stage. This program computes those of its own
  // stage only (local() gives kNoValue for the others').
  struct StagedOutput {
    int stage = 0;
    int64_t shards = 1;  // as output_shards and output_axes give it on that stage
    int axis = -1;
  };
  std::unordered_map<ir::ValueId, StagedOutput> output_stage;
  int transfers = 0;               // values the pipeline stages send each other
  std::vector<ir::ValueId> sends;  // tokens of this stage's sends in `graph`, planned to run
  // The program's value of a step-graph value (an input to bind, an output to read);
  // kNoValue when this rank's program has none (another pipeline stage's).
  ir::ValueId local(ir::ValueId step_value) const;
  // 1, or the ranks whose blocks output `local_output` of `graph` is one of.
  int64_t shards_of(ir::ValueId local_output) const;
};

// `outputs` and `donatable` are values of `step`, as runtime::plan_memory takes them.
Program compile(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                const std::vector<ir::ValueId>& donatable, const PlanSpec& plan,
                const CompileOptions& options = {});

}  // namespace solo::compile
