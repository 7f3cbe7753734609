// What a plan asks of the compile layer: how the step is spread over the devices. Parsed
// from SOLO_PLAN ("dp=4,zero=1,recompute=block"), later chosen by the planner.
#pragma once
#include <string>

namespace solo::compile {

struct PlanSpec {
  int dp = 1;              // data-parallel ranks
  int tp = 1;              // tensor-parallel ranks
  int pp = 1;              // pipeline stages
  int micro_batches = 1;   // of the batch: gradients accumulate over them (pp: the pipeline's)
  int zero = 0;            // 0: none; 1 optimizer states, 2 + gradients, 3 + parameters sharded
  bool recompute = false;  // replay each block's forward in backward
  bool low_prec = false;   // shard the low-precision parameter copies (mixed precision)

  int devices() const { return dp * tp * pp; }
  // "DP=4, No PP, No TP, recomputation: none, distribute_param: false, ..."
  std::string str() const;
  // "dp=4,tp=1,pp=1,micro=1,zero=0,recompute=none,low_prec=0", as parse_plan_spec reads it.
  std::string spec() const;
  bool operator==(const PlanSpec&) const = default;
};

// Parses "dp=4,tp=1,pp=1,micro=1,zero=3,recompute=block|none,low_prec=1"; keys may be
// omitted (defaults above). Throws naming `source` (where the text came from), the bad key or
// value and the accepted ones.
PlanSpec parse_plan_spec(const std::string& text, const std::string& source = "SOLO_PLAN");

// Why the runtime cannot run `plan` yet ("" when it can): it executes data and tensor
// parallelism with ZeRO 0-3 and recomputation; pipeline parallelism is compiled and costed only.
std::string not_runnable_reason(const PlanSpec& plan);

// Throws, with the reason and what to change, unless this build can run `plan` on `devices`
// devices (the flavor's).
void check_runnable(const PlanSpec& plan, int devices);

}  // namespace solo::compile
