// `solo`: lists and switches flavors of the virtual accelerator, shows its running jobs, and
// plans a model for a cluster (`solo plan`, cli/plan.h).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "plan.h"
#include "solo/cluster/inventory.h"
#include "solo/cluster/jobs.h"
#include "solo/core/error.h"
#include "solo/core/version.h"

namespace {

using solo::cluster::Flavor;
using solo::cluster::Inventory;

using solo::kVersion;

std::string plural(int n, const std::string& word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

// Left-aligned columns, two spaces apart; the first column is the marker.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);
    std::cout << line << "\n";
  }
}

// The current flavor's name, or "" with a warning when the saved one is no longer valid, so
// that `solo flavors` and `solo switch` still work to repair it.
std::string current_name(const Inventory& inv) {
  try {
    return solo::cluster::current_flavor(inv).name;
  } catch (const solo::Error& e) {
    std::cerr << "solo: warning: " << e.what() << "\n";
    return "";
  }
}

std::string hosts_of(const Inventory& inv, const Flavor& f) {
  std::string out;
  for (const auto& [host, ranks] : inv.placement(f)) {
    out += (out.empty() ? "" : ",") + host.name;
    if (ranks != f.devices) out += ":" + std::to_string(ranks);
  }
  return out;
}

std::string gib(int64_t bytes) {
  if (bytes <= 0) return "unknown";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  return buf;
}

int cmd_flavors(const Inventory& inv) {
  std::string current = current_name(inv);
  std::vector<std::vector<std::string>> rows = {
      {" ", "NAME", "DEVICES", "DEVICE KIND", "HOSTS", "DESCRIPTION"}};
  for (const Flavor& f : inv.flavors) {
    rows.push_back({f.name == current ? "*" : " ", f.name, std::to_string(f.devices), f.device_kind,
                    hosts_of(inv, f), f.description});
  }
  print_table(rows);
  std::cout << "\nInventory: " << inv.source << ". Change with `solo switch [NAME]`.\n";
  return 0;
}

void announce(const Inventory& inv, const std::string& name) {
  const Flavor& f = inv.flavor(name);
  std::cout << "Switched to flavor " << f.name << " (" << plural(f.devices, "device") << ")\n";
  const char* env = std::getenv("SOLO_FLAVOR");
  if (env && *env && name != env) {
    std::cerr << "solo: note: SOLO_FLAVOR=" << env
              << " overrides the saved flavor in this shell; unset it to use " << name << "\n";
  }
}

int cmd_switch(const Inventory& inv, const std::string& name) {
  if (!name.empty()) {
    solo::cluster::set_current_flavor(inv, name);
    announce(inv, name);
    return 0;
  }
  std::string current = current_name(inv);
  std::cout << "Flavors (* current):\n";
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < inv.flavors.size(); ++i) {
    const Flavor& f = inv.flavors[i];
    rows.push_back({f.name == current ? "*" : " ", std::to_string(i + 1) + ")", f.name,
                    plural(f.devices, f.device_kind + " device"), f.description});
  }
  print_table(rows);
  std::cout << "Choose a flavor by number or name (empty keeps "
            << (current.empty() ? "the current one" : current) << "): " << std::flush;
  std::string line;
  if (!std::getline(std::cin, line)) line.clear();
  line.erase(line.find_last_not_of(" \t\r\n") + 1);
  line.erase(0, line.find_first_not_of(" \t\r\n"));
  if (line.empty()) {
    std::cout << "\nFlavor unchanged" << (current.empty() ? "" : ": " + current) << "\n";
    return 0;
  }
  std::string chosen = line;
  if (line.find_first_not_of("0123456789") == std::string::npos) {
    size_t n = line.size() > 6 ? 0 : std::stoul(line);
    SOLO_CHECK(n >= 1 && n <= inv.flavors.size(), "invalid choice ", line,
               ": enter a number from 1 to ", inv.flavors.size(), " or a flavor name");
    chosen = inv.flavors[n - 1].name;
  }
  solo::cluster::set_current_flavor(inv, chosen);  // an unknown name throws with the list
  std::cout << "\n";
  announce(inv, chosen);
  return 0;
}

std::string when(int64_t unix_seconds) {
  if (unix_seconds <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

int cmd_smi(const Inventory& inv) {
  const Flavor& f = solo::cluster::current_flavor(inv);
  std::cout << "Flavor: " << f.name << " (" << plural(f.devices, f.device_kind + " device")
            << "; inventory: " << inv.source << ")\n";
  std::vector<std::vector<std::string>> rows = {
      {" ", "HOST", "ADDRESS", "RANKS", "DEVICE KIND", "MEMORY PER DEVICE"}};
  for (const auto& [host, ranks] : inv.placement(f)) {
    rows.push_back({" ", host.name, host.address, std::to_string(ranks), host.device_kind,
                    gib(host.device_memory_bytes)});
  }
  print_table(rows);
  std::cout << "\n";
  std::vector<solo::cluster::JobRecord> jobs = solo::cluster::list_job_records();
  if (jobs.empty()) {
    std::cout << "No running jobs.\n";
    return 0;
  }
  std::cout << "Running jobs:\n";
  for (const auto& job : jobs) {
    std::cout << "  " << job.job_id << "  flavor " << job.flavor << "  "
              << plural(job.ranks, "rank") << "  pid " << job.pid << "  started "
              << when(job.started) << "\n";
    if (!job.command.empty()) std::cout << "    command: " << job.command << "\n";
    if (job.rank_memory_bytes.empty()) {
      std::cout << "    memory: not reported yet\n";
      continue;
    }
    std::cout << "    memory (MiB):";
    for (size_t r = 0; r < job.rank_memory_bytes.size(); ++r) {
      std::cout << (r ? "," : "") << " rank " << r << " "
                << (job.rank_memory_bytes[r] + (1 << 19)) / (1 << 20);
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"solo: flavors of the virtual accelerator and its running jobs"};
  app.require_subcommand(1);
  auto* flavors = app.add_subcommand("flavors", "List the flavors; * marks the current one");
  auto* sw = app.add_subcommand("switch", "Choose the current flavor (a menu without NAME)");
  std::string name;
  sw->add_option("name", name, "the flavor to switch to");
  auto* smi = app.add_subcommand("smi", "Show the current flavor's devices and running jobs");
  auto* version = app.add_subcommand("version", "Print the version");
  solo::cli::PlanArgs plan_args;
  auto* plan = app.add_subcommand("plan", "Plan a model's training for a cluster (a dry run)");
  plan->add_option("--model", plan_args.model,
                   "llama2-7b, llama2-13b, llama2-70b, llama3-8b, llama3-70b, gpt2, gpt2-medium, "
                   "gpt2-large, gpt2-xl or a config.json");
  plan->add_flag("--all-flavors", plan_args.all_flavors,
                 "plan PROGRAM's step for every flavor into the plan cache (give it after --)");
  plan->add_option("program", plan_args.program, "with --all-flavors: the program and its args");
  plan->add_option("--device", plan_args.device, "device kind (catalogue name, or cpu)");
  plan->add_option("--devices", plan_args.devices, "number of devices");
  plan->add_option("--memory-gib", plan_args.memory_gib, "memory per device instead of the kind's");
  plan->add_option("--devices-per-host", plan_args.devices_per_host,
                   "devices in one host (default 8 for an accelerator, all for cpu)");
  plan->add_option(
      "--plan", plan_args.plan,
      "cost this plan only: dp=..,tp=..,pp=..,micro=..,zero=..,recompute=..,low_prec=..");
  plan->add_option("--batch", plan_args.batch, "global batch (sequences)");
  plan->add_option("--seq", plan_args.seq, "sequence length (tokens)");
  plan->add_option("--precision", plan_args.precision, "fp32 or bf16-mixed");
  plan->add_option("--top", plan_args.top, "candidates to list");
  plan->add_flag("--json", plan_args.json, "print JSON instead of the table");
  // CLI11 reports a mistyped command as "a subcommand is required"; name it instead.
  const std::vector<std::string> commands = {"flavors", "switch", "smi", "plan", "version"};
  if (argc > 1 && argv[1][0] != '-' &&
      std::find(commands.begin(), commands.end(), argv[1]) == commands.end()) {
    std::cerr << "solo: unknown command '" << argv[1]
              << "' (commands: flavors, switch, smi, plan, version); run `solo --help`\n";
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "solo: " << e.what() << "; run `solo --help`\n";
    return 1;
  }
  try {
    if (version->parsed()) {
      std::cout << "solo " << kVersion << "\n";
      return 0;
    }
    if (plan->parsed())
      return plan_args.all_flavors ? solo::cli::cmd_plan_all_flavors(plan_args)
                                   : solo::cli::cmd_plan(plan_args);
    Inventory inv = solo::cluster::load_inventory();
    if (flavors->parsed()) return cmd_flavors(inv);
    if (sw->parsed()) return cmd_switch(inv, name);
    if (smi->parsed()) return cmd_smi(inv);
  } catch (const std::exception& e) {
    std::cerr << "solo: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
