// The planner's search: every candidate plan of the flavor compiled (on threads, nothing
// allocated), dropped with its reason when its peak does not fit the device, the rest costed
// on a device profile, and the cheapest chosen. Deterministic: every rank of a job searches
// the same step graph alike and so runs the same plan.
//
// Candidates: every dp x tp of the flavor's devices (tp within a host, dividing the heads,
// KV heads and matmul weights of the step), ZeRO 0-3 over the dp ranks, recomputation per
// block or none, and the sharding of low-precision copies under zero=3 when the step has
// mixed precision. Tensor-parallel candidates are compiled and costed; until the runtime
// executes them the search sets them aside (and says so). Pipeline parallelism joins with
// its pass.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "solo/compile/program.h"
#include "solo/planner/device_catalogue.h"

namespace solo::compile {

struct SearchOptions {
  int devices = 1;
  int devices_per_host = 0;  // 0: every device on one host
  // Choose only among plans the runtime can run (a training run); `solo plan` ranks all.
  bool runnable_only = true;
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
  int threads = 0;              // 0: one per hardware thread
  std::vector<PlanSpec> plans;  // the candidates (empty: candidate_plans of the flavor)
};

struct Candidate {
  PlanSpec plan;
  bool fits = false;
  std::string dropped;       // why it was dropped ("" when it fits)
  std::string not_runnable;  // why the runtime cannot run it yet ("" when it can)
  size_t peak_bytes = 0;     // on the device during the step: held + read + the memory plan's
  // Pipeline plans: each stage's peak (peak_bytes is the largest); empty without stages.
  std::vector<size_t> stage_peak_bytes;
  double step_seconds = 0;  // predicted (fitting candidates)
  ResidentBytes resident;   // per device, of the steady step: parameters, gradients, states
  double flops = 0;         // per device and step, as costed
  double comm_bytes = 0;    // per device and step: bytes its collectives put on links
  double comm_inter_host_bytes = 0;  // the part of them on the link between hosts
};

struct SearchResult {
  std::vector<Candidate> candidates;  // in enumeration order
  // The first fitting candidate within 2% of the fastest prediction (-1: none fits).
  int chosen = -1;
  // The fastest fitting candidate when it is faster than the chosen one and was set aside
  // because the runtime cannot run it yet (-1: none).
  int set_aside = -1;
  int set_aside_count = 0;  // fitting candidates faster than the chosen one, set aside
  double compile_ms = 0, select_ms = 0;
  int64_t tokens = 0;  // a step's tokens (for tokens/s; 0: unknown)
  const Candidate& best() const { return candidates.at(static_cast<size_t>(chosen)); }
  // The compiled candidate with the smallest peak (null: none compiled), for the message
  // when nothing fits.
  const Candidate* smallest() const;
  // The log lines of DESIGN.md §1, one per line.
  std::string report() const;
  // One line per candidate: its plan and predicted step time and peak, or why it was dropped.
  std::string table() const;
};

struct CandidateSpace {
  int devices = 1;
  int devices_per_host = 0;      // 0: all on one host
  bool mixed_precision = false;  // low_prec variants only for a step with 16-bit casts
  bool pipeline = true;          // pp > 1 too (false: the stage's plans model search extends)
};

// Every candidate plan of the space, in order: tp, then ZeRO, recomputation, low_prec; the
// pipeline plans (pp > 1, more stages last) after all of those, so that a tie keeps pp=1.
std::vector<PlanSpec> candidate_plans(const CandidateSpace& space);

// Why the step cannot be split over `tp` tensor-parallel ranks ("" when it can): tp must
// divide the heads and KV heads of every attention and both axes of every matmul weight.
std::string tensor_parallel_reason(const ir::Graph& step, int tp);

// Searches the candidates for the step (outputs and donatable as compile() takes them).
SearchResult search_plans(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                          const std::vector<ir::ValueId>& donatable, const SearchOptions& options);

// Whether the step casts to a 16-bit float (mixed precision), and the bytes of its inputs.
bool has_mixed_precision(const ir::Graph& g);
// The tokens a step trains on: the elements of its largest integer batch input (the token
// ids), 0 when it has none.
int64_t tokens_per_step(const ir::Graph& g);
size_t input_bytes(const ir::Graph& g);

// Sets r.chosen (the first fitting candidate within 2% of the fastest prediction, of those
// the runtime runs when runnable_only) and r.set_aside.
void select_best(SearchResult& r, bool runnable_only);

// work(0) .. work(n - 1) on `threads` threads (0: one per hardware thread).
void run_on_threads(size_t n, int threads, const std::function<void(size_t)>& work);

// A profile for a host CPU device until the planner measures one: assumed rates of one core
// (documented in docs/architecture.md). Ranks the candidates; its times are rough.
planner::DeviceProfile assumed_cpu_profile();

}  // namespace solo::compile
