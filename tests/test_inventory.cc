#include "solo/cluster/inventory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cluster_test_env.h"
#include "solo/core/error.h"

namespace {

namespace fs = std::filesystem;
using solo::cluster::Flavor;
using solo::cluster::Host;
using solo::cluster::Inventory;
using solo::testing::EnvGuard;
using solo::testing::read_text;
using solo::testing::TempDir;
using solo::testing::write_text;

constexpr int64_t kGiB = int64_t{1} << 30;

const char* kValid = R"({
  "hosts": [
    {"name": "node0", "address": "10.0.0.1", "device_kind": "h100", "device_count": 8,
     "device_memory_gib": 80},
    {"name": "node1", "address": "10.0.0.2", "device_kind": "h100", "device_count": 8,
     "device_memory_gib": 80},
    {"name": "login", "address": "10.0.0.9", "device_kind": "cpu", "device_count": 2,
     "device_memory_gib": 0.5}
  ],
  "flavors": [
    {"name": "h100-8", "devices": 8, "device_kind": "h100", "hosts": ["node0"],
     "description": "one node"},
    {"name": "h100-12", "devices": 12, "device_kind": "h100"},
    {"name": "h100-10r", "devices": 10, "device_kind": "h100", "hosts": ["node1", "node0"]},
    {"name": "cpu-8", "devices": 8, "device_kind": "cpu", "hosts": ["login"]}
  ]
})";

std::vector<std::string> names(const Inventory& inv) {
  std::vector<std::string> out;
  for (const Flavor& f : inv.flavors) out.push_back(f.name);
  return out;
}

std::string error_of(const std::string& json) {
  try {
    solo::cluster::parse_inventory(json, "/etc/solo/bad.json");
  } catch (const solo::Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Inventory, RepeatedKeyIsRefused) {
  const std::string e = error_of(R"({"hosts": [], "hosts": [], "flavors": []})");
  EXPECT_NE(e.find("key 'hosts' appears twice"), std::string::npos) << e;
  EXPECT_NE(e.find("/etc/solo/bad.json"), std::string::npos) << e;
}

TEST(Inventory, ParsesValidFile) {
  Inventory inv = solo::cluster::parse_inventory(kValid, "site.json");
  EXPECT_EQ(inv.source, "site.json");
  ASSERT_EQ(inv.hosts.size(), 3u);
  EXPECT_EQ(inv.hosts[0].name, "node0");
  EXPECT_EQ(inv.hosts[0].address, "10.0.0.1");
  EXPECT_EQ(inv.hosts[0].device_kind, "h100");
  EXPECT_EQ(inv.hosts[0].device_count, 8);
  EXPECT_EQ(inv.hosts[0].device_memory_bytes, 80 * kGiB);
  EXPECT_EQ(inv.hosts[2].device_memory_bytes, kGiB / 2);
  EXPECT_EQ(names(inv), (std::vector<std::string>{"h100-8", "h100-12", "h100-10r", "cpu-8"}));
  const Flavor& f = inv.flavor("h100-8");
  EXPECT_EQ(f.devices, 8);
  EXPECT_EQ(f.device_kind, "h100");
  EXPECT_EQ(f.hosts, std::vector<std::string>{"node0"});
  EXPECT_EQ(f.description, "one node");
  EXPECT_TRUE(inv.flavor("h100-12").hosts.empty());
  EXPECT_EQ(inv.flavor("h100-12").description, "");
}

struct BadCase {
  std::string json;
  std::vector<std::string> expect;  // substrings of the error besides the file name
};

TEST(Inventory, InvalidFilesNameFileAndField) {
  const std::string host =
      R"({"name": "n", "address": "a", "device_kind": "h100", "device_count": 4})";
  const std::string cpu =
      R"({"name": "c", "address": "a", "device_kind": "cpu", "device_count": 2})";
  const std::string fl = R"({"name": "f", "devices": 2, "device_kind": "h100"})";
  auto inv = [](const std::string& hosts, const std::string& flavors) {
    return R"({"hosts": [)" + hosts + R"(], "flavors": [)" + flavors + "]}";
  };
  const std::vector<BadCase> cases = {
      {"{\"hosts\": [", {"not valid JSON"}},
      // A number too large for a double: nlohmann throws out_of_range, not parse_error (found
      // by fuzz/fuzz_inventory).
      {inv(R"({"name": "n", "address": "a", "device_kind": "h100", "device_count": 4,
               "device_memory_gib": 1e999})",
           fl),
       {"not valid JSON", "number overflow"}},
      {R"({"flavors": []})", {"inventory.hosts", "missing"}},
      {R"({"hosts": [)" + host + "]}", {"inventory.flavors", "missing"}},
      {R"({"hosts": [)" + host + R"(], "flavors": [)" + fl + R"(], "extra": 1})",
       {"inventory.extra", "unknown field"}},
      {inv(R"({"name": "n", "address": "a", "device_kind": "h100", "device_count": 4, "gpus": 4})",
           fl),
       {"hosts[0].gpus", "unknown field"}},
      {inv(R"({"name": "n", "address": "a", "device_kind": "h100"})", fl),
       {"hosts[0].device_count", "missing"}},
      {inv(R"({"name": "n", "device_kind": "h100", "device_count": 4})", fl),
       {"hosts[0].address", "missing"}},
      {inv(R"({"name": "n", "address": "a", "device_kind": "h100", "device_count": 0})", fl),
       {"hosts[0].device_count", "positive integer"}},
      {inv(R"({"name": "n", "address": "a", "device_kind": "h100", "device_count": "4"})", fl),
       {"hosts[0].device_count", "positive integer"}},
      {inv(R"({"name": "n", "address": "a", "device_kind": "h100", "device_count": 4,
               "device_memory_gib": -1})",
           fl),
       {"hosts[0].device_memory_gib"}},
      {inv(host, R"({"name": "f", "devices": 2, "device_kind": "h100", "gpu": true})"),
       {"flavors[0].gpu", "unknown field"}},
      {inv(host, R"({"devices": 2, "device_kind": "h100"})"), {"flavors[0].name", "missing"}},
      {inv(host, R"({"name": "f", "devices": 1.5, "device_kind": "h100"})"),
       {"flavors[0].devices", "positive integer"}},
      {inv(host, R"({"name": "f", "devices": 8, "device_kind": "h100"})"),
       {"flavors[0].devices", "needs 8", "have 4"}},
      {inv(host, fl + "," + fl), {"flavors[1].name", "duplicate flavor 'f'"}},
      {inv(host + "," + host, fl), {"hosts[1].name", "duplicate host 'n'"}},
      {inv(host, R"({"name": "f", "devices": 2, "device_kind": "h100", "hosts": ["m"]})"),
       {"flavors[0].hosts", "'m'"}},
      {inv(host, R"({"name": "f", "devices": 2, "device_kind": "h100", "hosts": "n"})"),
       {"flavors[0].hosts"}},
      // The host exists, but has CPUs, not GPUs.
      {inv(host + "," + cpu,
           R"({"name": "f", "devices": 2, "device_kind": "h100", "hosts": ["c"]})"),
       {"flavors[0].hosts", "'c'"}},
      {inv(host, R"({"name": "f", "devices": 2, "device_kind": "a100"})"),
       {"flavors[0].device_kind", "a100"}},
      {inv(host, ""), {"flavors", "at least one"}},
  };
  for (const BadCase& c : cases) {
    std::string err = error_of(c.json);
    SCOPED_TRACE(c.json);
    EXPECT_NE(err.find("/etc/solo/bad.json"), std::string::npos) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    for (const std::string& s : c.expect) EXPECT_NE(err.find(s), std::string::npos) << err;
  }
}

TEST(Inventory, CpuFlavorsMayOversubscribe) {
  Inventory inv = solo::cluster::parse_inventory(
      R"({"hosts": [{"name": "c", "address": "a", "device_kind": "cpu", "device_count": 2}],
          "flavors": [{"name": "cpu-16", "devices": 16, "device_kind": "cpu"}]})",
      "cpu.json");
  EXPECT_EQ(inv.flavor("cpu-16").devices, 16);
}

TEST(Inventory, DefaultWithoutGpus) {
  Inventory inv = solo::cluster::default_inventory("box", 6, 12 * kGiB, 0);
  EXPECT_EQ(inv.source, "embedded default");
  ASSERT_EQ(inv.hosts.size(), 1u);
  EXPECT_EQ(inv.hosts[0].name, "box");
  EXPECT_EQ(inv.hosts[0].address, "127.0.0.1");
  EXPECT_EQ(inv.hosts[0].device_kind, "cpu");
  EXPECT_EQ(inv.hosts[0].device_count, 6);
  EXPECT_EQ(inv.hosts[0].device_memory_bytes, 2 * kGiB);
  EXPECT_EQ(names(inv), (std::vector<std::string>{"cpu-1", "cpu-2", "cpu-4", "cpu-8"}));
  std::vector<int> devices;
  for (const Flavor& f : inv.flavors) {
    devices.push_back(f.devices);
    EXPECT_EQ(f.device_kind, "cpu");
  }
  EXPECT_EQ(devices, (std::vector<int>{1, 2, 4, 8}));
  // Only cpu-8 exceeds 6 cores, and its description says so.
  EXPECT_EQ(inv.flavor("cpu-4").description.find("oversubscribed"), std::string::npos);
  EXPECT_NE(inv.flavor("cpu-8").description.find("oversubscribed"), std::string::npos);
}

TEST(Inventory, DefaultWithGpus) {
  Inventory four = solo::cluster::default_inventory("box", 2, 4 * kGiB, 4);
  EXPECT_EQ(names(four), (std::vector<std::string>{"cpu-1", "cpu-2", "cpu-4", "cpu-8", "gpu-1",
                                                   "gpu-2", "gpu-4"}));
  ASSERT_EQ(four.hosts.size(), 2u);
  EXPECT_EQ(four.hosts[1].device_kind, "gpu");
  EXPECT_EQ(four.hosts[1].device_count, 4);
  EXPECT_EQ(four.flavor("gpu-4").devices, 4);
  EXPECT_EQ(four.flavor("gpu-4").device_kind, "gpu");

  Inventory six = solo::cluster::default_inventory("box", 2, 4 * kGiB, 6);
  EXPECT_EQ(names(six), (std::vector<std::string>{"cpu-1", "cpu-2", "cpu-4", "cpu-8", "gpu-1",
                                                  "gpu-2", "gpu-4", "gpu-6"}));
  Inventory one = solo::cluster::default_inventory("box", 2, 4 * kGiB, 1);
  EXPECT_EQ(names(one).back(), "gpu-1");
  EXPECT_EQ(one.flavors.size(), 5u);
}

TEST(Inventory, DefaultDetectsThisHost) {
  Inventory inv = solo::cluster::default_inventory();
  ASSERT_GE(inv.hosts.size(), 1u);
  EXPECT_EQ(inv.hosts[0].device_count, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
  EXPECT_GT(inv.hosts[0].device_memory_bytes, 0);
  EXPECT_EQ(inv.hosts.size(), solo::cluster::nvidia_gpu_count() > 0 ? 2u : 1u);
}

TEST(Inventory, CountsGpusInDriverDirectory) {
  TempDir dir;
  EXPECT_EQ(solo::cluster::nvidia_gpu_count(dir.path()), 0);
  for (const char* bus : {"0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0"}) {
    fs::create_directory(dir.path() + "/" + bus);
  }
  EXPECT_EQ(solo::cluster::nvidia_gpu_count(dir.path()), 3);
  EXPECT_EQ(solo::cluster::nvidia_gpu_count(dir.path() + "/missing"), 0);
}

TEST(Inventory, UnknownFlavorListsNames) {
  Inventory inv = solo::cluster::default_inventory("box", 2, 4 * kGiB, 0);
  try {
    inv.flavor("gpu-8");
    FAIL() << "no error";
  } catch (const solo::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("'gpu-8'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cpu-1, cpu-2, cpu-4, cpu-8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("solo flavors"), std::string::npos) << msg;
  }
}

class CurrentFlavor : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.set("XDG_CONFIG_HOME", config_.path());
    env_.unset("SOLO_FLAVOR");
  }
  std::string flavor_file() const { return config_.path() + "/solo/flavor"; }
  TempDir config_;
  EnvGuard env_;
  Inventory inv_ = solo::cluster::default_inventory("box", 2, 4 * kGiB, 2);
};

TEST_F(CurrentFlavor, DefaultsToCpu1) {
  EXPECT_EQ(solo::cluster::current_flavor(inv_).name, "cpu-1");
  EXPECT_FALSE(fs::exists(flavor_file()));
}

TEST_F(CurrentFlavor, PersistsAtomically) {
  solo::cluster::set_current_flavor(inv_, "gpu-2");
  EXPECT_EQ(read_text(flavor_file()), "gpu-2\n");
  EXPECT_EQ(solo::cluster::current_flavor(inv_).name, "gpu-2");
  // Only the flavor file remains: the temporary file was renamed over it.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(config_.path() + "/solo")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  solo::cluster::set_current_flavor(inv_, "cpu-4");
  EXPECT_EQ(solo::cluster::current_flavor(inv_).name, "cpu-4");
  // The returned reference is the inventory's own flavor.
  EXPECT_EQ(&solo::cluster::current_flavor(inv_), &inv_.flavor("cpu-4"));
}

TEST_F(CurrentFlavor, RejectsUnknownNames) {
  solo::cluster::set_current_flavor(inv_, "cpu-2");
  EXPECT_THROW(solo::cluster::set_current_flavor(inv_, "tpu-4"), solo::Error);
  EXPECT_EQ(read_text(flavor_file()), "cpu-2\n");
  // A saved flavor that the inventory no longer has is an error that says how to fix it.
  write_text(flavor_file(), "gpu-8\n");
  try {
    solo::cluster::current_flavor(inv_);
    FAIL() << "no error";
  } catch (const solo::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("gpu-8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("solo switch"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cpu-1, cpu-2, cpu-4, cpu-8, gpu-1, gpu-2"), std::string::npos) << msg;
  }
}

TEST_F(CurrentFlavor, EnvironmentOverrides) {
  solo::cluster::set_current_flavor(inv_, "cpu-2");
  env_.set("SOLO_FLAVOR", "cpu-8");
  EXPECT_EQ(solo::cluster::current_flavor(inv_).name, "cpu-8");
  env_.set("SOLO_FLAVOR", "cpu-3");
  try {
    solo::cluster::current_flavor(inv_);
    FAIL() << "no error";
  } catch (const solo::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("SOLO_FLAVOR=cpu-3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cpu-1, cpu-2"), std::string::npos) << msg;
  }
  env_.set("SOLO_FLAVOR", "");  // empty counts as unset
  EXPECT_EQ(solo::cluster::current_flavor(inv_).name, "cpu-2");
}

TEST_F(CurrentFlavor, HomeWithoutXdg) {
  TempDir home;
  env_.unset("XDG_CONFIG_HOME");
  env_.set("HOME", home.path());
  EXPECT_EQ(solo::cluster::user_config_dir(), home.path() + "/.config/solo");
  solo::cluster::set_current_flavor(inv_, "cpu-8");
  EXPECT_EQ(read_text(home.path() + "/.config/solo/flavor"), "cpu-8\n");
}

TEST_F(CurrentFlavor, CustomInventoryWithoutCpu1UsesFirstFlavor) {
  Inventory inv = solo::cluster::parse_inventory(kValid, "site.json");
  EXPECT_EQ(solo::cluster::current_flavor(inv).name, "h100-8");
}

TEST(Inventory, LoadsFromSoloInventory) {
  TempDir dir;
  EnvGuard env;
  std::string path = dir.path() + "/inv.json";
  write_text(path, kValid);
  env.set("SOLO_INVENTORY", path);
  Inventory inv = solo::cluster::load_inventory();
  EXPECT_EQ(inv.source, path);
  EXPECT_EQ(inv.flavors.size(), 4u);
  env.set("SOLO_INVENTORY", dir.path() + "/missing.json");
  try {
    solo::cluster::load_inventory();
    FAIL() << "no error";
  } catch (const solo::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos) << e.what();
  }
  // The user file is found under XDG_CONFIG_HOME when SOLO_INVENTORY is unset.
  env.unset("SOLO_INVENTORY");
  env.set("XDG_CONFIG_HOME", dir.path());
  write_text(dir.path() + "/solo/inventory.json", kValid);
  EXPECT_EQ(solo::cluster::load_inventory().source, dir.path() + "/solo/inventory.json");
}

std::vector<std::pair<std::string, int>> placed(const Inventory& inv, const std::string& name) {
  std::vector<std::pair<std::string, int>> out;
  for (const auto& [host, n] : inv.placement(inv.flavor(name))) out.emplace_back(host.name, n);
  return out;
}

using Placement = std::vector<std::pair<std::string, int>>;

TEST(Inventory, PlacementFillsGpuHostsInOrder) {
  Inventory inv = solo::cluster::parse_inventory(kValid, "site.json");
  EXPECT_EQ(placed(inv, "h100-8"), (Placement{{"node0", 8}}));
  EXPECT_EQ(placed(inv, "h100-12"), (Placement{{"node0", 8}, {"node1", 4}}));
  // The flavor's own host order wins over the inventory's.
  EXPECT_EQ(placed(inv, "h100-10r"), (Placement{{"node1", 8}, {"node0", 2}}));
  EXPECT_EQ(inv.placement(inv.flavor("h100-8")).front().first.address, "10.0.0.1");
}

TEST(Inventory, PlacementPutsCpuRanksOnOneHost) {
  Inventory inv = solo::cluster::parse_inventory(kValid, "site.json");
  EXPECT_EQ(placed(inv, "cpu-8"), (Placement{{"login", 8}}));
  Inventory def = solo::cluster::default_inventory("box", 2, 4 * kGiB, 4);
  EXPECT_EQ(placed(def, "cpu-8"), (Placement{{"box", 8}}));
  EXPECT_EQ(placed(def, "gpu-2"), (Placement{{"box", 2}}));
  EXPECT_EQ(def.placement(def.flavor("gpu-2")).front().first.device_kind, "gpu");
}

TEST(Inventory, PlacementOfImpossibleFlavorFails) {
  // Built by hand, so not validated: placement still refuses to invent devices.
  Inventory inv;
  inv.source = "hand-built";
  inv.hosts.push_back(Host{"n", "a", "h100", 2, 0});
  inv.flavors.push_back(Flavor{"h100-4", 4, "h100", {}, ""});
  inv.flavors.push_back(Flavor{"a100-1", 1, "a100", {}, ""});
  EXPECT_THROW(inv.placement(inv.flavors[0]), solo::Error);
  EXPECT_THROW(inv.placement(inv.flavors[1]), solo::Error);
}

}  // namespace
