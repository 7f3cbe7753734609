#include "solo/core/process_place.h"

#include "solo/core/error.h"

namespace solo {

namespace {
ProcessPlace g_place;  // set once by the Session, before any thread reads it
}  // namespace

const ProcessPlace& process_place() {
  return g_place;
}

void set_process_place(const ProcessPlace& place) {
  SOLO_CHECK(place.ranks > 0 && place.rank >= 0 && place.rank < place.ranks, "process rank ",
             place.rank, " is not in [0, ", place.ranks, ")");
  g_place = place;
}

}  // namespace solo
