// The reshard rules, one file each (see reshard.h for the table).
#pragma once
#include "solo/layout/reshard.h"

namespace solo::layout {

ReshardRule partial_to_replicate();  // reshard_all_reduce.cc
ReshardRule split_to_replicate();    // reshard_all_gather.cc
ReshardRule partial_to_split();      // reshard_reduce_scatter.cc
ReshardRule replicate_to_split();    // reshard_slice.cc
ReshardRule replicate_to_partial();  // reshard_partial.cc

}  // namespace solo::layout
