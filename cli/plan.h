// `solo plan`: the planner as a dry run for a model and a cluster that need not be here. The
// model's training step is traced on the meta device (shapes only), every candidate plan is
// compiled for the given devices and costed on their catalogue profile, and the ranked
// candidates and the chosen plan are printed (or written as JSON).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace solo::cli {

struct PlanArgs {
  std::string model;  // a built-in (llama2-7b, ...) or a config.json path
  std::string device = "h100";
  int devices = 8;
  int devices_per_host = 0;  // 0: 8 for an accelerator, every device for cpu
  std::string plan;          // "dp=..,tp=..": cost this plan only
  double memory_gib = 0;     // > 0: the device's memory instead of the catalogue's
  int64_t batch = 8;         // global batch, sequences
  int64_t seq = 2048;
  std::string precision = "bf16-mixed";
  int top = 5;
  bool json = false;
  // `--all-flavors -- PROGRAM ARGS...`: plan the program's step for every flavor (into the plan
  // cache) instead of a model for one cluster.
  bool all_flavors = false;
  std::vector<std::string> program;
};

// Prints the plan; returns 0, or 1 when no candidate fits.
int cmd_plan(const PlanArgs& args);
// `solo plan --all-flavors -- PROGRAM`: runs the program as one process with
// SOLO_PLAN_ALL_FLAVORS=1; its first training step is planned for every flavor of the
// inventory and cached (tensor.h, plan_all_flavors), so a later `solo switch` to any of them
// starts without a search. Returns the program's status (it does not return on success).
int cmd_plan_all_flavors(const PlanArgs& args);

}  // namespace solo::cli
