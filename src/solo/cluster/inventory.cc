#include "solo/cluster/inventory.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/core/json_keys.h"

namespace solo::cluster {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kEmbedded = "embedded default";
constexpr int64_t kGiB = int64_t{1} << 30;

// A CPU "device" is one process with a share of the cores, so CPU flavors may ask for more
// devices than the host has cores; accelerators cannot be shared that way.
bool oversubscribable(const std::string& kind) {
  return kind == "cpu";
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string flavor_names(const Inventory& inv) {
  std::string out;
  for (const Flavor& f : inv.flavors) out += (out.empty() ? "" : ", ") + f.name;
  return out.empty() ? "none" : out;
}

std::string read_file(const std::string& path) {
  SOLO_CHECK(!fs::is_directory(path), "inventory ", path,
             " is a directory; give the inventory JSON file (docs/inventory.md)");
  std::ifstream in(path, std::ios::binary);
  SOLO_CHECK(in, "cannot read ", path, "; check that it exists and is readable");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Field checks of one JSON object; every message names the file and the field's path.
class Fields {
 public:
  Fields(const json& obj, std::string source, std::string where)
      : obj_(obj), source_(std::move(source)), where_(std::move(where)) {
    SOLO_CHECK(obj_.is_object(), source_, ": ", where_, " must be a JSON object");
  }

  void only(std::initializer_list<const char*> allowed) const {
    for (const auto& item : obj_.items()) {
      // A named reference, not a structured binding: clang 14 cannot capture those.
      const std::string& key = item.key();
      bool ok =
          std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; });
      if (ok) continue;
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      SOLO_FAIL(source_, ": ", path(key), ": unknown field (allowed: ", list,
                "); see docs/inventory.md");
    }
  }

  const json* get(const char* key, bool required) const {
    auto it = obj_.find(key);
    if (it == obj_.end()) {
      SOLO_CHECK(!required, source_, ": ", path(key), ": missing required field",
                 "; see docs/inventory.md");
      return nullptr;
    }
    return &*it;
  }

  std::string str(const char* key, bool required, std::string fallback = "") const {
    const json* v = get(key, required);
    if (!v) return fallback;
    SOLO_CHECK(v->is_string() && !v->get<std::string>().empty(), source_, ": ", path(key),
               ": expected a non-empty string");
    return v->get<std::string>();
  }

  int positive_int(const char* key) const {
    const json* v = get(key, true);
    SOLO_CHECK(v->is_number_integer() && v->get<int64_t>() >= 1 && v->get<int64_t>() <= 1 << 20,
               source_, ": ", path(key), ": expected a positive integer, got ", v->dump());
    return static_cast<int>(v->get<int64_t>());
  }

  std::string path(const std::string& key) const { return where_ + "." + key; }
  const std::string& where() const { return where_; }

 private:
  const json& obj_;
  std::string source_;
  std::string where_;
};

void validate(const Inventory& inv) {
  const std::string& src = inv.source;
  SOLO_CHECK(!inv.flavors.empty(), src, ": flavors: at least one flavor is needed");
  for (size_t i = 0; i < inv.hosts.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      // One machine with CPUs and GPUs is two entries of one name, one per device kind.
      SOLO_CHECK(inv.hosts[i].name != inv.hosts[j].name ||
                     inv.hosts[i].device_kind != inv.hosts[j].device_kind,
                 src, ": hosts[", i, "].name: duplicate host '", inv.hosts[i].name,
                 "' of device kind '", inv.hosts[i].device_kind, "'");
    }
  }
  for (size_t i = 0; i < inv.flavors.size(); ++i) {
    const Flavor& f = inv.flavors[i];
    for (size_t j = 0; j < i; ++j) {
      SOLO_CHECK(f.name != inv.flavors[j].name, src, ": flavors[", i, "].name: duplicate flavor '",
                 f.name, "'");
    }
    int available = 0;
    bool any = false;
    for (const std::string& h : f.hosts) {
      bool found = false;
      for (const Host& host : inv.hosts) {
        if (host.name == h && host.device_kind == f.device_kind) {
          found = true;
          available += host.device_count;
        }
      }
      SOLO_CHECK(found, src, ": flavors[", i, "].hosts: flavor '", f.name, "' names host '", h,
                 "', which has no '", f.device_kind, "' devices in hosts");
      any = true;
    }
    if (f.hosts.empty()) {
      for (const Host& host : inv.hosts) {
        if (host.device_kind != f.device_kind) continue;
        available += host.device_count;
        any = true;
      }
    }
    SOLO_CHECK(any, src, ": flavors[", i, "].device_kind: no host has '", f.device_kind,
               "' devices for flavor '", f.name, "'");
    SOLO_CHECK(oversubscribable(f.device_kind) || f.devices <= available, src, ": flavors[", i,
               "].devices: flavor '", f.name, "' needs ", f.devices, " ", f.device_kind,
               " devices but its hosts have ", available);
  }
}

std::string plural(int n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

}  // namespace

const Flavor& Inventory::flavor(const std::string& name) const {
  for (const Flavor& f : flavors) {
    if (f.name == name) return f;
  }
  SOLO_FAIL("unknown flavor '", name, "' (available: ", flavor_names(*this),
            "); run `solo flavors` to list them");
}

std::vector<std::pair<Host, int>> Inventory::placement(const Flavor& f) const {
  std::vector<const Host*> candidates;
  if (f.hosts.empty()) {
    for (const Host& h : hosts) {
      if (h.device_kind == f.device_kind) candidates.push_back(&h);
    }
  } else {
    for (const std::string& name : f.hosts) {
      for (const Host& h : hosts) {
        if (h.name == name && h.device_kind == f.device_kind) candidates.push_back(&h);
      }
    }
  }
  SOLO_CHECK(!candidates.empty(), "flavor '", f.name, "': no host in ", source, " has '",
             f.device_kind, "' devices; fix the inventory");
  std::vector<std::pair<Host, int>> out;
  if (oversubscribable(f.device_kind)) {
    // CPU ranks are processes: keep them on one host, where they share memory bandwidth only.
    out.emplace_back(*candidates.front(), f.devices);
    return out;
  }
  int left = f.devices;
  for (const Host* h : candidates) {
    if (left == 0) break;
    int take = std::min(left, h->device_count);
    if (take > 0) out.emplace_back(*h, take);
    left -= take;
  }
  SOLO_CHECK(left == 0, "flavor '", f.name, "' needs ", f.devices, " ", f.device_kind,
             " devices but the hosts in ", source, " have ", f.devices - left,
             "; pick a smaller flavor");
  return out;
}

Inventory parse_inventory(const std::string& json_text, const std::string& source) {
  json doc;
  try {
    check_unique_json_keys(json_text, source);
    doc = json::parse(json_text);
  } catch (const json::exception& e) {  // a number too large is out_of_range, not parse_error
    SOLO_FAIL(source, ": not valid JSON: ", e.what());
  }
  Inventory inv;
  inv.source = source;
  Fields top(doc, source, "inventory");
  top.only({"hosts", "flavors"});
  const json* hosts = top.get("hosts", true);
  SOLO_CHECK(hosts->is_array() && !hosts->empty(), source,
             ": hosts: expected a non-empty array of hosts");
  for (size_t i = 0; i < hosts->size(); ++i) {
    Fields f((*hosts)[i], source, "hosts[" + std::to_string(i) + "]");
    f.only({"name", "address", "device_kind", "device_count", "device_memory_gib"});
    Host h;
    h.name = f.str("name", true);
    h.address = f.str("address", true);
    h.device_kind = f.str("device_kind", true);
    h.device_count = f.positive_int("device_count");
    if (const json* mem = f.get("device_memory_gib", false)) {
      SOLO_CHECK(mem->is_number() && mem->get<double>() >= 0, source, ": ",
                 f.path("device_memory_gib"), ": expected a non-negative number, got ",
                 mem->dump());
      h.device_memory_bytes = std::llround(mem->get<double>() * static_cast<double>(kGiB));
    }
    inv.hosts.push_back(std::move(h));
  }
  const json* flavors = top.get("flavors", true);
  SOLO_CHECK(flavors->is_array(), source, ": flavors: expected an array of flavors");
  for (size_t i = 0; i < flavors->size(); ++i) {
    Fields f((*flavors)[i], source, "flavors[" + std::to_string(i) + "]");
    f.only({"name", "devices", "device_kind", "hosts", "description"});
    Flavor fl;
    fl.name = f.str("name", true);
    fl.devices = f.positive_int("devices");
    fl.device_kind = f.str("device_kind", true);
    fl.description = f.str("description", false);
    if (const json* hs = f.get("hosts", false)) {
      SOLO_CHECK(hs->is_array(), source, ": ", f.path("hosts"),
                 ": expected an array of host names");
      for (const json& h : *hs) {
        SOLO_CHECK(h.is_string() && !h.get<std::string>().empty(), source, ": ", f.path("hosts"),
                   ": expected host names (strings), got ", h.dump());
        fl.hosts.push_back(h.get<std::string>());
      }
    }
    inv.flavors.push_back(std::move(fl));
  }
  validate(inv);
  return inv;
}

int nvidia_gpu_count(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return 0;  // no driver loaded: no GPUs
  int n = 0;
  for (const auto& entry : it) {
    (void)entry;
    ++n;
  }
  return n;
}

Inventory default_inventory(const std::string& hostname, int cores, int64_t ram_bytes,
                            int gpu_count) {
  cores = std::max(cores, 1);
  Inventory inv;
  inv.source = kEmbedded;
  inv.hosts.push_back({hostname, "127.0.0.1", "cpu", cores, ram_bytes / cores});
  for (int n : {1, 2, 4, 8}) {
    std::string desc = std::to_string(n) + (n == 1 ? " CPU process" : " CPU processes") +
                       " on this host's " + plural(cores, "core");
    if (n > cores) desc += " (oversubscribed)";
    inv.flavors.push_back({"cpu-" + std::to_string(n), n, "cpu", {}, desc});
  }
  if (gpu_count > 0) {
    // Memory stays 0 (unknown): reading it would need NVML, which Solo does not depend on.
    inv.hosts.push_back({hostname, "127.0.0.1", "gpu", gpu_count, 0});
    for (int n = 1;; n *= 2) {
      int devices = std::min(n, gpu_count);
      inv.flavors.push_back(
          {"gpu-" + std::to_string(devices),
           devices,
           "gpu",
           {},
           plural(devices, "GPU") + " of this host's " + std::to_string(gpu_count)});
      if (n >= gpu_count) break;
    }
  }
  return inv;
}

Inventory default_inventory() {
  char buf[256] = {};
  std::string name = gethostname(buf, sizeof(buf) - 1) == 0 && buf[0] ? buf : "localhost";
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  int64_t ram = pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : 0;
  return default_inventory(name, cores > 0 ? static_cast<int>(cores) : 1, ram, nvidia_gpu_count());
}

Inventory load_inventory() {
  std::string path = env("SOLO_INVENTORY");
  if (!path.empty()) {
    SOLO_CHECK(fs::exists(path), "SOLO_INVENTORY=", path,
               ": no such file; fix the path or unset SOLO_INVENTORY");
    return parse_inventory(read_file(path), path);
  }
  for (const std::string& p :
       {user_config_dir() + "/inventory.json", std::string("/etc/solo/inventory.json")}) {
    if (fs::exists(p)) return parse_inventory(read_file(p), p);
  }
  return default_inventory();
}

void create_parent_directories(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  SOLO_CHECK(!ec, "cannot create directory ", parent.string(), ": ", ec.message(),
             "; check its permissions");
}

const Flavor& current_flavor(const Inventory& inv) {
  std::string name = env("SOLO_FLAVOR");
  if (!name.empty()) {
    for (const Flavor& f : inv.flavors) {
      if (f.name == name) return f;
    }
    SOLO_FAIL("SOLO_FLAVOR=", name, " is not a flavor (available: ", flavor_names(inv),
              "); fix or unset SOLO_FLAVOR, and run `solo flavors` to list them");
  }
  std::string path = user_config_dir() + "/flavor";
  if (fs::exists(path)) {
    std::string saved = read_file(path);
    saved.erase(saved.find_last_not_of(" \t\r\n") + 1);
    saved.erase(0, saved.find_first_not_of(" \t\r\n"));
    if (!saved.empty()) {
      for (const Flavor& f : inv.flavors) {
        if (f.name == saved) return f;
      }
      SOLO_FAIL("the saved flavor '", saved, "' (", path, ") is not in ", inv.source,
                " (available: ", flavor_names(inv), "); pick one with `solo switch`");
    }
  }
  for (const Flavor& f : inv.flavors) {
    if (f.name == "cpu-1") return f;
  }
  // A custom inventory without cpu-1: its first flavor is the natural default.
  SOLO_CHECK(!inv.flavors.empty(), inv.source, ": no flavors; add one (see docs/inventory.md)");
  return inv.flavors.front();
}

void set_current_flavor(const Inventory& inv, const std::string& name) {
  inv.flavor(name);  // throws with the list of flavors
  const std::string path = user_config_dir() + "/flavor";
  create_parent_directories(path);
  write_file_atomic(path, name + "\n");
}

}  // namespace solo::cluster
