// The planner's choices on disk (DESIGN §4): the plan chosen for a training step, per (step,
// flavor, device memory, Solo version), in $XDG_CACHE_HOME/solo/plans (else ~/.cache). A
// second run of the program on the flavor compiles the cached plan alone instead of every
// candidate and says so; `solo plan --all-flavors -- PROGRAM` fills the cache for every
// flavor of the inventory, so that a later `solo switch` starts without a search. The step
// is named by its graph's structural hash with its outputs, donations and mapped inputs: a
// changed model, batch or program plans again, and so does a new version of Solo (its
// compile layer may plan differently). The device profile is not in the key: the closed loop
// rescales every rate of a profile alike, which scales every candidate's time alike and so
// keeps the choice; delete the directory to plan again on a profile measured anew.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "solo/compile/search.h"
#include "solo/core/version.h"

namespace solo {

// What the planner plans for: a flavor of the inventory (empty name: none, no cache).
struct PlanFlavor {
  std::string name;
  std::string device_kind;  // "cpu", "h100", ...
  int devices = 1;
  int devices_per_host = 0;  // 0: all on one host
  size_t device_memory = 0;  // per device; 0: unlimited
  int threads = 0;           // CPU threads of each rank (0: this process's)
};

struct PlanCacheKey {
  uint64_t step = 0;  // step_hash()
  PlanFlavor flavor;
  size_t held_bytes = 0;  // on the device before the step (tensors already there)
  std::string version = kVersion;
};

// The step's identity for the cache: its graph's structure with the outputs it requests, the
// inputs it may donate and those still in mapped files.
uint64_t step_hash(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                   const std::vector<ir::ValueId>& donatable,
                   const std::vector<ir::ValueId>& mapped, bool async_collectives);

// The cache file of `key`.
std::string plan_cache_path(const PlanCacheKey& key);
// The cached plan's spec (compile::PlanSpec::spec()), or "" when there is none, it is for
// another key or version, or unreadable (then planned and written again).
std::string read_cached_plan(const PlanCacheKey& key);
// Writes the search's chosen plan for `key` (atomically). Throws naming the path on failure.
void write_cached_plan(const PlanCacheKey& key, const compile::SearchResult& r);
// Removes `key`'s file, if any (its flavor no longer runs the step).
void forget_cached_plan(const PlanCacheKey& key);

}  // namespace solo
