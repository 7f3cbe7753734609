#include "solo/planner/device_catalogue.h"

#include <algorithm>
#include <cctype>

#include "solo/core/error.h"

namespace solo::planner {

double DeviceProfile::peak_flops(DType dtype) const {
  return dtype == DType::BF16 || dtype == DType::F16 ? matrix_flops_16bit : vector_flops_32bit;
}

namespace {
constexpr double GB = 1e9, TB = 1e12, T = 1e12, GiB = 1073741824.0;

DeviceProfile entry(std::string name, double memory, double matrix16, double vector32,
                    double bandwidth, double intra, double inter) {
  return {std::move(name), memory, matrix16, vector32, bandwidth, intra, inter};
}
}  // namespace

// Data-sheet figures (SXM/OAM parts, dense). Links: NVLink 4 900 GB/s and NVLink 3 600 GB/s
// both directions together; Infinity Fabric per the AMD data sheets; one 400 Gb/s (H100,
// H200, MI300X) or 200 Gb/s NIC per device between hosts.
const std::vector<DeviceProfile>& device_catalogue() {
  static const std::vector<DeviceProfile> catalogue = {
      entry("h100", 80 * GiB, 989.4 * T, 66.9 * T, 3.35 * TB, 450 * GB, 50 * GB),
      entry("h200", 141 * GB, 989.4 * T, 66.9 * T, 4.8 * TB, 450 * GB, 50 * GB),
      entry("a100-40", 40 * GiB, 312 * T, 19.5 * T, 1.555 * TB, 300 * GB, 25 * GB),
      entry("a100-80", 80 * GiB, 312 * T, 19.5 * T, 2.039 * TB, 300 * GB, 25 * GB),
      entry("mi250", 128 * GiB, 362.1 * T, 45.3 * T, 3.2 * TB, 200 * GB, 25 * GB),
      entry("mi210", 64 * GiB, 181 * T, 22.6 * T, 1.6 * TB, 150 * GB, 25 * GB),
      entry("mi300x", 192 * GiB, 1307.4 * T, 163.4 * T, 5.3 * TB, 448 * GB, 50 * GB),
  };
  return catalogue;
}

const DeviceProfile& device_profile(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string names;
  for (const DeviceProfile& p : device_catalogue()) {
    if (p.name == lower) return p;
    if (!names.empty()) names += ", ";
    names += p.name;
  }
  SOLO_FAIL("no device profile '", name, "' in the catalogue; known devices: ", names);
}

const DeviceProfile* device_profile_of_model(const std::string& model) {
  std::string lower = model;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto has = [&](const char* word) { return lower.find(word) != std::string::npos; };
  const char* name = has("h200")     ? "h200"
                     : has("h100")   ? "h100"
                     : has("a100")   ? (has("80g") ? "a100-80" : "a100-40")
                     : has("mi300x") ? "mi300x"
                     : has("mi250")  ? "mi250"
                     : has("mi210")  ? "mi210"
                                     : nullptr;
  return name ? &device_profile(name) : nullptr;
}

}  // namespace solo::planner
