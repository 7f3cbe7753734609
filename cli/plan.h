// `solo plan`: the planner as a dry run for a model and a cluster that need not be here. The
// model's training step is traced on the meta device (shapes only), every candidate plan is
// compiled for the given devices and costed on their catalogue profile, and the ranked
// candidates and the chosen plan are printed (or written as JSON).
#pragma once
#include <cstdint>
#include <string>

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
};

// Prints the plan; returns 0, or 1 when no candidate fits.
int cmd_plan(const PlanArgs& args);

}  // namespace solo::cli
