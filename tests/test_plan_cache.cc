// The planner's plan cache on disk: a plan written for a key is read back for that key only;
// a changed step (model or batch), flavor, device memory or Solo version misses, and so does
// a damaged file (the run then searches and writes it again).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cluster_test_env.h"
#include "solo/ir/ops.h"
#include "solo/tensor/plan_cache.h"

namespace solo {
namespace {

// A search result whose chosen plan is `spec`.
compile::SearchResult chosen(const std::string& spec) {
  compile::SearchResult r;
  compile::Candidate c;
  c.plan = compile::parse_plan_spec(spec, "the test");
  c.fits = true;
  c.step_seconds = 0.5;
  c.peak_bytes = 1000;
  r.candidates.push_back(c);
  r.chosen = 0;
  return r;
}

// The step identity of y = x @ w for x [rows, 8] and w [8, 8].
uint64_t matmul_step(int64_t rows) {
  ir::Graph g;
  const ir::ValueId x = g.input({Shape({rows, 8}), DType::F32}, "x", true);
  const ir::ValueId w = g.input({Shape({8, 8}), DType::F32}, "w");
  const ir::ValueId y = ir::matmul(g, x, w);
  return step_hash(g, {y}, {}, {}, false);
}

TEST(PlanCache, APlanIsReadBackOnlyForItsOwnStepFlavorMemoryAndVersion) {
  testing::TempDir dir;
  testing::EnvGuard env;
  env.set("XDG_CACHE_HOME", dir.path());
  const PlanCacheKey key{matmul_step(4), {"cpu-4", "cpu", 4, 4, size_t{1} << 30, 1}, 256};
  EXPECT_EQ(read_cached_plan(key), "");  // nothing cached yet
  const std::string spec = "dp=4,tp=1,pp=1,micro=1,zero=1,recompute=none,low_prec=0";
  write_cached_plan(key, chosen(spec));
  ASSERT_TRUE(std::filesystem::exists(plan_cache_path(key))) << plan_cache_path(key);
  EXPECT_EQ(read_cached_plan(key), spec);

  EXPECT_EQ(matmul_step(4), key.step);  // the same step hashes alike
  std::vector<PlanCacheKey> others(7, key);
  others[0].step = matmul_step(8);  // another batch (or model): another graph
  others[1].flavor.name = "cpu-4b";
  others[2].flavor.devices = 2;
  others[3].flavor.devices_per_host = 2;
  others[4].flavor.device_memory = size_t{1} << 29;
  others[5].held_bytes = 512;
  others[6].version = "0.0.0-other";
  for (size_t i = 0; i < others.size(); ++i) {
    EXPECT_NE(plan_cache_path(others[i]), plan_cache_path(key)) << i;
    EXPECT_EQ(read_cached_plan(others[i]), "") << i;
  }
  // A file whose recorded key is another's (a collision, a copied file) is not used.
  std::filesystem::copy_file(plan_cache_path(key), plan_cache_path(others[6]));
  EXPECT_EQ(read_cached_plan(others[6]), "");
  // A damaged file or a plan that does not parse plans again.
  std::ofstream(plan_cache_path(key)) << "{not json";
  EXPECT_EQ(read_cached_plan(key), "");
  write_cached_plan(key, chosen(spec));
  {
    std::ifstream in(plan_cache_path(key));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text.replace(text.find("zero=1"), 6, "zero=9");
    std::ofstream(plan_cache_path(key)) << text;
  }
  EXPECT_EQ(read_cached_plan(key), "");
  forget_cached_plan(key);
  EXPECT_FALSE(std::filesystem::exists(plan_cache_path(key)));
}

}  // namespace
}  // namespace solo
