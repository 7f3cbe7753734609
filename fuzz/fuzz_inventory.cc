// libFuzzer target: inventory JSON through parse_inventory, then the lookups a job makes. A
// solo::Error is the expected answer to bad input; anything else (another exception, a crash,
// a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "solo/cluster/inventory.h"
#include "solo/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const solo::cluster::Inventory inv = solo::cluster::parse_inventory(text, "fuzz input");
    for (const solo::cluster::Flavor& f : inv.flavors) {
      inv.flavor(f.name);
      inv.placement(f);
    }
  } catch (const solo::Error&) {
  }
  return 0;
}
