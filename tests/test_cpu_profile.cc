// The planner's CPU profile: measured once and then read from the cache on disk (keyed by
// the Solo version, so another version measures again), and rescaled there by the closed loop
// only when a measured step is over 20% off its prediction.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cluster_test_env.h"
#include "solo/backend/backend.h"
#include "solo/tensor/cpu_profile.h"

namespace solo {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump();
}

TEST(CpuProfile, MeasuredOnceThenReadFromTheCacheOfThisVersion) {
  testing::TempDir dir;
  testing::EnvGuard env;
  env.set("XDG_CACHE_HOME", dir.path());
  auto backend = make_backend("cpu");
  const planner::DeviceProfile measured = cpu_profile(*backend, nullptr);
  EXPECT_GT(measured.vector_flops_32bit, 1e8);  // any CPU of this century
  EXPECT_GT(measured.matrix_flops_16bit, 1e8);
  EXPECT_GT(measured.memory_bandwidth, 1e8);
  EXPECT_GT(measured.kernel_launch_s, 0);
  EXPECT_EQ(backend->bytes_in_use(), 0u);  // the calibration's buffers are freed
  const std::string path = cpu_profile_path(1);
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  // A second use reads the file: a figure planted there comes back.
  nlohmann::json j = read_json(path);
  j["vector_flops_32bit"] = 123e9;
  write_json(path, j);
  EXPECT_EQ(cpu_profile(*backend, nullptr).vector_flops_32bit, 123e9);
  // Another version's file, or an unreadable one, is measured again and rewritten.
  j["solo_version"] = "0.0.0-other";
  write_json(path, j);
  EXPECT_NE(cpu_profile(*backend, nullptr).vector_flops_32bit, 123e9);
  EXPECT_NE(read_json(path)["solo_version"], "0.0.0-other");
  std::ofstream(path) << "{not json";
  EXPECT_GT(cpu_profile(*backend, nullptr).vector_flops_32bit, 1e8);
}

TEST(CpuProfile, TheClosedLoopRescalesOnlyAPredictionOver20PercentOff) {
  testing::TempDir dir;
  testing::EnvGuard env;
  env.set("XDG_CACHE_HOME", dir.path());
  auto backend = make_backend("cpu");
  const planner::DeviceProfile p = cpu_profile(*backend, nullptr);
  const std::string before = read_json(cpu_profile_path(1)).dump();
  EXPECT_FALSE(recalibrate_cpu_profile(p, 1, 1.0, 1.15));  // +15%: kept
  EXPECT_FALSE(recalibrate_cpu_profile(p, 1, 1.0, 0.85));  // -15%: kept
  EXPECT_EQ(read_json(cpu_profile_path(1)).dump(), before);
  // Twice as slow as predicted: rates halve, latencies double.
  EXPECT_TRUE(recalibrate_cpu_profile(p, 1, 2.0, 1.0));
  const planner::DeviceProfile q = cpu_profile(*backend, nullptr);
  EXPECT_DOUBLE_EQ(q.vector_flops_32bit, p.vector_flops_32bit / 2);
  EXPECT_DOUBLE_EQ(q.matrix_flops_16bit, p.matrix_flops_16bit / 2);
  EXPECT_DOUBLE_EQ(q.memory_bandwidth, p.memory_bandwidth / 2);
  EXPECT_DOUBLE_EQ(q.kernel_launch_s, p.kernel_launch_s * 2);
  EXPECT_DOUBLE_EQ(read_json(cpu_profile_path(1))["scaled_by"].get<double>(), 2.0);
}

}  // namespace
}  // namespace solo
