#include "solo/tensor/mesh_communicators.h"

#include "solo/core/error.h"
#include "solo/layout/mesh.h"

namespace solo {

MeshCommunicators::MeshCommunicators(comm::Communicator* world, const compile::PlanSpec& plan)
    : world_(world) {
  if (plan.tp == 1) return;
  const int size = world ? world->size() : 1;
  SOLO_CHECK(plan.dp * plan.tp == size, "plan ", plan.str(), " needs ", plan.dp * plan.tp,
             " ranks, but the job has ", size, "; use a flavor of that many devices");
  const layout::Mesh mesh({{"dp", plan.dp}, {"tp", plan.tp}});
  const int rank = world->rank();
  // Both splits run on every rank in the same order, as collectives must.
  dp_ = world->split(static_cast<int>(mesh.color_along(0, rank)),
                     static_cast<int>(mesh.key_along(0, rank)));
  tp_ = world->split(static_cast<int>(mesh.color_along(1, rank)),
                     static_cast<int>(mesh.key_along(1, rank)));
}

}  // namespace solo
