// The communicators of a plan's device mesh, pp x dp x tp with tp varying fastest (so that a
// tensor-parallel group is ranks of one host) and pp slowest (a stage is a block of ranks):
// one per mesh axis, split from the job's communicator. The compiled programs' collectives
// name their axis as a group: 0 is the data-parallel one, 1 the tensor-parallel one
// (compile/tensor_parallel.h), 2 the pipeline's (compile/pipeline.h), whose rank is the stage.
#pragma once
#include <memory>
#include <vector>

#include "solo/comm/communicator.h"
#include "solo/compile/plan_spec.h"

namespace solo {

class MeshCommunicators {
 public:
  MeshCommunicators() = default;
  // Collective over `world` when plan.tp > 1 or plan.pp > 1 (every rank calls it with the
  // same plan); `world` (null: one rank) must outlive this.
  MeshCommunicators(comm::Communicator* world, const compile::PlanSpec& plan);

  // Group 0: the world itself when the plan is data-parallel only.
  comm::Communicator* data_parallel() const { return dp_ ? dp_.get() : world_; }
  comm::Communicator* tensor_parallel() const { return tp_.get(); }
  comm::Communicator* pipeline() const { return pp_.get(); }
  // The executor's communicator of each group.
  std::vector<comm::Communicator*> groups() const {
    return {data_parallel(), tensor_parallel(), pipeline()};
  }
  int data_parallel_rank() const { return rank_of(data_parallel()); }
  int tensor_parallel_rank() const { return rank_of(tensor_parallel()); }
  int tensor_parallel_size() const { return tp_ ? tp_->size() : 1; }
  int pipeline_rank() const { return rank_of(pipeline()); }  // this rank's stage
  int pipeline_size() const { return pp_ ? pp_->size() : 1; }

 private:
  static int rank_of(const comm::Communicator* c) { return c ? c->rank() : 0; }
  comm::Communicator* world_ = nullptr;
  std::unique_ptr<comm::Communicator> dp_, tp_, pp_;
};

}  // namespace solo
