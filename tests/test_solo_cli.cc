// Runs the built `solo` binary (build/cli/solo, next to build/tests/) with its configuration
// and job directories pointed at temporary ones.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "cluster_test_env.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
using solo::testing::EnvGuard;
using solo::testing::read_text;
using solo::testing::TempDir;
using solo::testing::write_text;

const char* kInventory = R"({
  "hosts": [
    {"name": "host0", "address": "127.0.0.1", "device_kind": "cpu", "device_count": 8,
     "device_memory_gib": 2},
    {"name": "node0", "address": "10.0.0.5", "device_kind": "h100", "device_count": 4,
     "device_memory_gib": 80}
  ],
  "flavors": [
    {"name": "cpu-1", "devices": 1, "device_kind": "cpu", "description": "one process"},
    {"name": "cpu-2", "devices": 2, "device_kind": "cpu"},
    {"name": "cpu-4", "devices": 4, "device_kind": "cpu", "hosts": ["host0"]},
    {"name": "h100-4", "devices": 4, "device_kind": "h100", "description": "one node"}
  ]
})";

struct Result {
  int rc = -1;
  std::string out;  // stdout and stderr
};

std::string solo_binary() {
  return (fs::read_symlink("/proc/self/exe").parent_path() / "../cli/solo").lexically_normal();
}

Result run(const std::string& args, const std::string& stdin_text = "") {
  std::string cmd = solo_binary() + " " + args + " 2>&1";
  if (!stdin_text.empty())
    cmd = "printf '" + stdin_text + "' | " + cmd;
  else
    cmd += " </dev/null";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The table row whose second column is `name`, or "" when there is none.
std::string row_of(const std::string& table, const std::string& name) {
  for (const std::string& l : lines(table)) {
    std::istringstream in(l.size() > 1 ? l.substr(1) : "");
    std::string first;
    in >> first;
    if (first == name) return l;
  }
  return "";
}

std::string marked(const std::string& table) {
  std::string out;
  for (const std::string& l : lines(table)) {
    if (!l.empty() && l[0] == '*') out += (out.empty() ? "" : "|") + l;
  }
  return out;
}

class SoloCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(solo_binary())) << solo_binary() << " missing; build target solo";
    env_.set("XDG_CONFIG_HOME", config_.path());
    env_.set("XDG_CACHE_HOME", cache_.path());
    env_.unset("SOLO_FLAVOR");
    write_text(config_.path() + "/site.json", kInventory);
    env_.set("SOLO_INVENTORY", config_.path() + "/site.json");
  }
  std::string jobs() const { return cache_.path() + "/solo/jobs"; }
  TempDir config_;
  TempDir cache_;
  EnvGuard env_;
};

TEST_F(SoloCli, Version) {
  Result r = run("version");
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.out, "solo 0.1.0\n");
}

TEST_F(SoloCli, FlavorsListsTable) {
  Result r = run("flavors");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(lines(r.out)[0], "   NAME    DEVICES  DEVICE KIND  HOSTS  DESCRIPTION");
  EXPECT_EQ(row_of(r.out, "cpu-1"), "*  cpu-1   1        cpu          host0  one process");
  EXPECT_EQ(row_of(r.out, "cpu-4"), "   cpu-4   4        cpu          host0");
  EXPECT_EQ(row_of(r.out, "h100-4"), "   h100-4  4        h100         node0  one node");
  EXPECT_EQ(marked(r.out), row_of(r.out, "cpu-1"));
}

TEST_F(SoloCli, DefaultInventoryListsCpuFlavors) {
  if (fs::exists("/etc/solo/inventory.json")) GTEST_SKIP() << "a system inventory is installed";
  env_.unset("SOLO_INVENTORY");
  Result r = run("flavors");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* name : {"cpu-1", "cpu-2", "cpu-4", "cpu-8"}) {
    EXPECT_NE(row_of(r.out, name), "") << name << " missing in\n" << r.out;
  }
  EXPECT_NE(r.out.find("embedded default"), std::string::npos) << r.out;
}

TEST_F(SoloCli, SwitchByName) {
  Result r = run("switch cpu-2");
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.out, "Switched to flavor cpu-2 (2 devices)\n");
  EXPECT_EQ(read_text(config_.path() + "/solo/flavor"), "cpu-2\n");
  Result f = run("flavors");
  EXPECT_EQ(marked(f.out), row_of(f.out, "cpu-2"));
  EXPECT_EQ(run("switch cpu-1").out, "Switched to flavor cpu-1 (1 device)\n");
}

TEST_F(SoloCli, SwitchMenuByNumberAndName) {
  Result r = run("switch", "3\\n");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("*  1)  cpu-1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("   3)  cpu-4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Switched to flavor cpu-4 (4 devices)"), std::string::npos) << r.out;
  EXPECT_EQ(read_text(config_.path() + "/solo/flavor"), "cpu-4\n");

  Result by_name = run("switch", "h100-4\\n");
  ASSERT_EQ(by_name.rc, 0) << by_name.out;
  EXPECT_NE(by_name.out.find("*  3)  cpu-4"), std::string::npos) << by_name.out;
  EXPECT_EQ(read_text(config_.path() + "/solo/flavor"), "h100-4\n");
}

TEST_F(SoloCli, SwitchMenuKeepsFlavorOnEmptyInput) {
  run("switch cpu-2");
  Result eof = run("switch");  // stdin is /dev/null
  EXPECT_EQ(eof.rc, 0);
  EXPECT_NE(eof.out.find("Flavor unchanged: cpu-2"), std::string::npos) << eof.out;
  Result empty = run("switch", "\\n");
  EXPECT_EQ(empty.rc, 0);
  EXPECT_NE(empty.out.find("Flavor unchanged: cpu-2"), std::string::npos) << empty.out;
  EXPECT_EQ(read_text(config_.path() + "/solo/flavor"), "cpu-2\n");
}

TEST_F(SoloCli, SwitchMenuRejectsInvalidChoice) {
  for (const char* choice : {"5", "0", "tpu"}) {
    Result r = run("switch", std::string(choice) + "\\n");
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_NE(r.out.find(choice), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("Switched"), std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(config_.path() + "/solo/flavor"));
}

TEST_F(SoloCli, SwitchToUnknownFlavorFails) {
  Result r = run("switch nope");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(lines(r.out).size(), 1u) << r.out;
  EXPECT_NE(r.out.find("'nope'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu-1, cpu-2, cpu-4, h100-4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("solo flavors"), std::string::npos) << r.out;
}

TEST_F(SoloCli, UsageErrorsExitNonZero) {
  EXPECT_EQ(run("").rc, 1);
  EXPECT_EQ(run("bogus").rc, 1);
  EXPECT_EQ(run("--help").rc, 0);
}

TEST_F(SoloCli, SmiWithoutJobs) {
  Result r = run("smi");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("Flavor: cpu-1 (1 cpu device;"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("No running jobs."), std::string::npos) << r.out;
  run("switch h100-4");
  Result g = run("smi");
  EXPECT_NE(g.out.find("Flavor: h100-4 (4 h100 devices;"), std::string::npos) << g.out;
  EXPECT_NE(g.out.find("node0  10.0.0.5  4      h100         80.0 GiB"), std::string::npos)
      << g.out;
}

TEST_F(SoloCli, SmiListsLiveJobsAndDropsDeadOnes) {
  // A pid that is certainly dead: a child that has exited and been reaped.
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);
  write_text(jobs() + "/job-live.json",
             R"({"job_id": "job-live", "flavor": "cpu-2", "ranks": 2, "pid": )" +
                 std::to_string(getpid()) +
                 R"(, "started": 1700000000, "command": "train_llama --steps 5",
                    "rank_memory_bytes": [104857600, 209715200]})");
  write_text(jobs() + "/job-dead.json",
             R"({"job_id": "job-dead", "flavor": "cpu-4", "ranks": 4, "pid": )" +
                 std::to_string(child) +
                 R"(, "started": 1700000000, "command": "x", "rank_memory_bytes": []})");
  Result r = run("smi");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out.find("No running jobs."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("job-live  flavor cpu-2  2 ranks  pid " + std::to_string(getpid())),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("command: train_llama --steps 5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory (MiB): rank 0 100, rank 1 200"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("job-dead"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(jobs() + "/job-dead.json"));
  EXPECT_TRUE(fs::exists(jobs() + "/job-live.json"));
}

// `solo plan` for a cluster that is not here: Llama-2-7B on 8 H100 (the catalogue's 80 GiB)
// compiles every candidate, keeps those that fit with their reasons for the rest, and picks
// one whose peak fits and whose predicted rate stays below the devices' bf16 peak.
TEST_F(SoloCli, PlanChoosesAFittingPlanForAClusterThatIsNotHere) {
  Result r = run("plan --model llama2-7b --device h100 --devices 8 --batch 64 --seq 2048 --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_GE(j["candidates"].get<int>(), 50);  // dp x tp x pp x micro-batches x ZeRO x ...
  EXPECT_GE(j["feasible"].get<int>(), 1);
  EXPECT_EQ(j["candidates"].get<int>() - j["feasible"].get<int>(), j["dropped"].size());
  for (const auto& d : j["dropped"]) EXPECT_NE(d["reason"].get<std::string>(), "") << d;
  const auto& c = j["chosen"];
  EXPECT_EQ(c["dp"].get<int>() * c["tp"].get<int>() * c["pp"].get<int>(), 8);
  EXPECT_LE(c["peak_bytes_per_device"].get<double>(), 80.0 * (1u << 30));
  // A training step does 6 FLOPs per parameter per token at least: above 8 x 989 TFLOP/s
  // the prediction would beat the hardware.
  const double flops = 6.0 * j["parameters"].get<double>() * c["tokens_per_s"].get<double>();
  EXPECT_GT(flops, 0.0);
  EXPECT_LT(flops, 8 * 989e12);
  EXPECT_GT(c["mfu"].get<double>(), 0.0);
  EXPECT_LE(c["mfu"].get<double>(), 1.0);                  // never above the peak
  EXPECT_GT(c["comm_bytes_per_step"].get<double>(), 0.0);  // gradients cross the devices
  const Result table =
      run("plan --model llama2-7b --device h100 --devices 8 --batch 64 --seq 2048");
  ASSERT_EQ(table.rc, 0) << table.out;
  EXPECT_NE(table.out.find("[info] The number of candidates is " +
                           std::to_string(j["candidates"].get<int>()) + "."),
            std::string::npos);
  EXPECT_NE(table.out.find("Chosen: DP="), std::string::npos) << table.out;
  // --plan costs one given plan.
  Result given =
      run("plan --model llama2-7b --device h100 --devices 8 --batch 64 --seq 2048 --json "
          "--plan dp=2,tp=4,micro=8,zero=1");
  ASSERT_EQ(given.rc, 0) << given.out;
  const nlohmann::json g = nlohmann::json::parse(given.out);
  EXPECT_EQ(g["candidates"], 1);
  EXPECT_EQ(g["chosen"]["tp"], 4);
  EXPECT_EQ(g["chosen"]["micro_batches"], 8);
  EXPECT_EQ(g["chosen"]["runnable_now"], false);
  Result wrong = run("plan --model llama2-7b --devices 8 --plan dp=3");
  EXPECT_EQ(wrong.rc, 1);
  EXPECT_NE(wrong.out.find("--plan dp=3 uses 3 devices, not --devices 8"), std::string::npos)
      << wrong.out;
  Result typo = run("plan --model llama2-7b --devices 8 --plan dq=8");
  EXPECT_NE(typo.out.find("--plan: unknown key 'dq'"), std::string::npos) << typo.out;
}

// The GPT-2 shapes are built in too, and the chosen plan is explained: its communication on
// each link and, under a pipeline, each stage's blocks and devices (stages outermost).
TEST_F(SoloCli, PlanExplainsTheChosenPlansStagesAndLinksForGpt2) {
  const Result r =
      run("plan --model gpt2 --device h100 --devices 16 --devices-per-host 8 --batch 64 --seq 1024 "
          "--plan dp=4,tp=1,pp=4,micro=8");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("solo plan: gpt2 (0.12B parameters) on 16 x h100"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("  stage 0: layers 0-2 and the embedding on devices 0-3\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("  stage 1: layers 3-5 on devices 4-7\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  stage 3: layers 9-11 and the head on devices 12-15\n"), std::string::npos)
      << r.out;
  // Stages 1 and 2 sit on two hosts: their activations cross between hosts.
  const Result j =
      run("plan --model gpt2 --device h100 --devices 16 --devices-per-host 8 --batch 64 --seq 1024 "
          "--plan dp=4,tp=1,pp=4,micro=8 --json");
  ASSERT_EQ(j.rc, 0) << j.out;
  const nlohmann::json c = nlohmann::json::parse(j.out)["chosen"];
  EXPECT_GT(c["comm_inter_host_bytes_per_step"].get<double>(), 0.0) << c;
  EXPECT_LT(c["comm_inter_host_bytes_per_step"].get<double>(),
            c["comm_bytes_per_step"].get<double>())
      << c;
  for (const char* model : {"gpt2-medium", "gpt2-large", "gpt2-xl"}) {
    const Result m = run(std::string("plan --model ") + model +
                         " --device h100 --devices 8 --batch 16 --seq 1024");
    EXPECT_EQ(m.rc, 0) << model << "\n" << m.out;
    EXPECT_NE(m.out.find("Chosen: DP="), std::string::npos) << model << "\n" << m.out;
  }
}

TEST_F(SoloCli, PlanRefusesWhatNoPlanFitsAndUnknownModels) {
  Result big = run("plan --model llama2-70b --device h100 --devices 8 --batch 64 --seq 4096");
  EXPECT_EQ(big.rc, 1);
  EXPECT_NE(big.out.find("error: no plan of 8 device(s) fits 80.0 GiB per device: the smallest, "),
            std::string::npos)
      << big.out;
  Result unknown = run("plan --model llama9");
  EXPECT_EQ(unknown.rc, 1);
  EXPECT_NE(unknown.out.find("--model llama9 is neither a built-in model (gpt2, gpt2-large, "),
            std::string::npos)
      << unknown.out;
  Result bad = run("plan --model llama2-7b --devices 0");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.out.find("--devices 0 must be at least 1"), std::string::npos) << bad.out;
}

}  // namespace
