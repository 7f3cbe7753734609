#include "solo/tensor/mesh_communicators.h"

#include "solo/core/error.h"
#include "solo/layout/mesh.h"

namespace solo {

MeshCommunicators::MeshCommunicators(comm::Communicator* world, const compile::PlanSpec& plan)
    : world_(world) {
  if (plan.tp == 1 && plan.pp == 1) return;
  const int size = world ? world->size() : 1;
  SOLO_CHECK(plan.devices() == size, "plan ", plan.str(), " needs ", plan.devices(),
             " ranks, but the job has ", size, "; use a flavor of that many devices");
  const layout::Mesh mesh({{"pp", plan.pp}, {"dp", plan.dp}, {"tp", plan.tp}});
  const int rank = world->rank();
  // The splits run on every rank in the same order, as collectives must.
  auto split = [&](int axis) {
    return world->split(static_cast<int>(mesh.color_along(axis, rank)),
                        static_cast<int>(mesh.key_along(axis, rank)));
  };
  dp_ = split(1);
  if (plan.tp > 1) tp_ = split(2);
  if (plan.pp > 1) pp_ = split(0);
}

}  // namespace solo
