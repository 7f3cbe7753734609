// The inventory: hosts with their devices, and named flavors (how many devices a job uses,
// optionally on which hosts). Read from, first found: $SOLO_INVENTORY, the user file
// ~/.config/solo/inventory.json, the system file /etc/solo/inventory.json; with none of them,
// an embedded default describes this host: its CPU as flavors cpu-1, cpu-2, cpu-4, cpu-8 (a
// CPU device is one process with its share of the cores) and, when NVIDIA GPUs are present,
// gpu-N for N = 1, 2, 4, ... up to the GPU count. The format is documented in
// docs/inventory.md.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <vector>

#include "solo/core/user_dirs.h"

namespace solo::cluster {

struct Host {
  std::string name;         // e.g. "host0"
  std::string address;      // e.g. "127.0.0.1"
  std::string device_kind;  // "cpu", "h100", "h200", "a100-80", "mi250", ...
  int device_count = 1;
  int64_t device_memory_bytes = 0;
};

struct Flavor {
  std::string name;
  int devices = 1;
  std::string device_kind;         // all devices of a flavor are of one kind
  std::vector<std::string> hosts;  // empty: any hosts of that kind, in inventory order
  std::string description;
};

struct Inventory {
  std::vector<Host> hosts;
  std::vector<Flavor> flavors;
  std::string source;  // the file it came from, or "embedded default"

  // Throws a one-line error that lists the flavors when `name` is unknown.
  const Flavor& flavor(const std::string& name) const;
  // The hosts a flavor runs on, with the number of ranks (devices) on each.
  std::vector<std::pair<Host, int>> placement(const Flavor& f) const;
};

// Loads the inventory as described above; a malformed file is an error naming it.
Inventory load_inventory();
Inventory parse_inventory(const std::string& json_text, const std::string& source);
Inventory default_inventory();
// The default for a host described explicitly (what default_inventory() detects); for tests.
Inventory default_inventory(const std::string& hostname, int cores, int64_t ram_bytes,
                            int gpu_count);
// The number of NVIDIA GPUs: entries in `dir` (the driver's /proc listing; no NVML needed).
int nvidia_gpu_count(const std::string& dir = "/proc/driver/nvidia/gpus");

using solo::user_cache_dir;  // core/user_dirs.h
using solo::user_config_dir;
// Creates the directories above `path` (a file about to be written); throws naming them.
void create_parent_directories(const std::string& path);

// The current flavor: $SOLO_FLAVOR if set, else the one saved by `solo switch` in
// user_config_dir()/flavor, else "cpu-1" (else the inventory's first flavor, for inventories
// without cpu-1). Validated against the inventory; the reference points into `inv`.
const Flavor& current_flavor(const Inventory& inv);
// Saves `name` (validated) as the user's current flavor (atomic write).
void set_current_flavor(const Inventory& inv, const std::string& name);

}  // namespace solo::cluster
