// The planner's profile of a host CPU device, measured on first use and cached on disk (DESIGN
// §4): the GEMM rate in f32 and bf16 at three shapes, the memory bandwidth of an elementwise
// kernel, the cost of one kernel launch, and, with a communicator of several ranks, the
// latency and bandwidth of its all-reduce. Rank 0's figures are every rank's (broadcast), so
// every rank's search chooses the same plan. The cache is keyed by ranks, threads, host and
// Solo version; a measured step that the profile mispredicts by over 20% rescales it there
// (the closed loop), so the next run plans with what this machine did.
#pragma once
#include <optional>
#include <string>

#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/planner/device_catalogue.h"

namespace solo {

// The cached profile of this host for `comm`'s ranks (null: one), or a fresh measurement on
// `backend` (written to the cache). Collective over `comm`'s ranks.
planner::DeviceProfile cpu_profile(Backend& backend, comm::Communicator* comm);

// The cached profile of this host for `ranks` ranks of `threads` threads each, when one was
// measured (nothing is).
std::optional<planner::DeviceProfile> cached_cpu_profile(int ranks, int threads);

// The cache file cpu_profile reads and writes for `ranks` ranks (of this process's threads,
// or `threads`).
std::string cpu_profile_path(int ranks);
std::string cpu_profile_path(int ranks, int threads);

// A plan costed on `profile` took `measured_s` for `predicted_s`: when the prediction is over
// 20% off the measurement, the cached profile is rescaled by measured / predicted (rates
// divided, latencies multiplied) and true returned.
// Call on one rank.
bool recalibrate_cpu_profile(const planner::DeviceProfile& profile, int ranks, double measured_s,
                             double predicted_s);

}  // namespace solo
