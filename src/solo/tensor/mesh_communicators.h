// The communicators of a plan's device mesh, dp x tp with tp varying fastest (so that a
// tensor-parallel group is ranks of one host): one per mesh axis, split from the job's
// communicator. The compiled programs' collectives name their axis as a group: 0 is the
// data-parallel one, 1 the tensor-parallel one (compile/tensor_parallel.h).
#pragma once
#include <memory>
#include <vector>

#include "solo/comm/communicator.h"
#include "solo/compile/plan_spec.h"

namespace solo {

class MeshCommunicators {
 public:
  MeshCommunicators() = default;
  // Collective over `world` when plan.tp > 1 (every rank calls it with the same plan); `world`
  // (null: one rank) must outlive this.
  MeshCommunicators(comm::Communicator* world, const compile::PlanSpec& plan);

  // Group 0: the world itself when there is no tensor parallelism.
  comm::Communicator* data_parallel() const { return dp_ ? dp_.get() : world_; }
  comm::Communicator* tensor_parallel() const { return tp_.get(); }
  // The executor's communicator of each group.
  std::vector<comm::Communicator*> groups() const { return {data_parallel(), tensor_parallel()}; }
  int data_parallel_rank() const { return rank_of(data_parallel()); }
  int tensor_parallel_rank() const { return rank_of(tensor_parallel()); }
  int tensor_parallel_size() const { return tp_ ? tp_->size() : 1; }

 private:
  static int rank_of(const comm::Communicator* c) { return c ? c->rank() : 0; }
  comm::Communicator* world_ = nullptr;
  std::unique_ptr<comm::Communicator> dp_, tp_;
};

}  // namespace solo
