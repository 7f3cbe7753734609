// The planner's search: every candidate plan of the flavor compiled (on threads, nothing
// allocated), dropped with its reason when its peak does not fit the device, the rest costed
// on a device profile, and the cheapest chosen. Deterministic: every rank of a job searches
// the same step graph alike and so runs the same plan.
//
// Candidates today are what the compile layer can run: data parallelism over every device
// with ZeRO 0-3, recomputation per block or none, and the sharding of low-precision copies
// under zero=3 when the step has mixed precision. Tensor and pipeline parallelism join when
// their passes do.
#pragma once
#include <string>
#include <vector>

#include "solo/compile/program.h"
#include "solo/planner/device_catalogue.h"

namespace solo::compile {

struct SearchOptions {
  int devices = 1;
  // The device's memory (0: unlimited) and what it holds outside the step's plan before the
  // step runs (tensors already on it); mapped inputs are read into it as the program says.
  size_t device_memory = 0;
  size_t held_bytes = 0;
  std::vector<ir::ValueId> mapped;  // step inputs still in mapped files
  // Plan for the steps after the first (a dry run, `solo plan`): the device holds every input
  // as the plan leaves it (blocks under ZeRO); held_bytes and mapped are not used.
  bool steady = false;
  planner::DeviceProfile profile;
  CompileOptions compile;
  int threads = 0;  // 0: one per hardware thread
};

struct Candidate {
  PlanSpec plan;
  bool fits = false;
  std::string dropped;      // why it was dropped ("" when it fits)
  size_t peak_bytes = 0;    // on the device during the step: held + read + the memory plan's
  double step_seconds = 0;  // predicted (fitting candidates)
  ResidentBytes resident;   // per device, of the steady step: parameters, gradients, states
  double flops = 0;         // per device and step, as costed
  double comm_bytes = 0;    // per device and step: bytes its collectives put on links
};

struct SearchResult {
  std::vector<Candidate> candidates;  // in enumeration order
  // The first fitting candidate within 2% of the fastest prediction (-1: none fits).
  int chosen = -1;
  double compile_ms = 0, select_ms = 0;
  const Candidate& best() const { return candidates.at(static_cast<size_t>(chosen)); }
  // The compiled candidate with the smallest peak (null: none compiled), for the message
  // when nothing fits.
  const Candidate* smallest() const;
  // The log lines of DESIGN.md §1, one per line.
  std::string report() const;
  // One line per candidate: its plan and predicted step time and peak, or why it was dropped.
  std::string table() const;
};

// The candidates for `devices` devices; low_prec variants only for a step with casts to a
// 16-bit float (mixed precision).
std::vector<PlanSpec> candidate_plans(int devices, bool mixed_precision);

// Searches the candidates for the step (outputs and donatable as compile() takes them).
SearchResult search_plans(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                          const std::vector<ir::ValueId>& donatable, const SearchOptions& options);

// A profile for a host CPU device until the planner measures one: assumed rates of one core
// (documented in docs/architecture.md). Ranks the candidates; its times are rough.
planner::DeviceProfile assumed_cpu_profile();

}  // namespace solo::compile
