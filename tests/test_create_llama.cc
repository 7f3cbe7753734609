// Runs the built solo_create_llama (build/tools/, next to build/tests/): sizes that do not fit
// this host's memory are refused before anything is allocated, bad sizes name their flag.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cluster_test_env.h"

namespace {

namespace fs = std::filesystem;
using solo::testing::TempDir;

struct Result {
  int rc = -1;
  std::string out;  // stdout and stderr
  double seconds = 0;
};

std::string tool() {
  return (fs::read_symlink("/proc/self/exe").parent_path() / "../tools/solo_create_llama")
      .lexically_normal();
}

Result run(const std::string& args) {
  const auto start = std::chrono::steady_clock::now();
  Result r;
  FILE* p = popen((tool() + " " + args + " 2>&1 </dev/null").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

size_t lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(CreateLlama, SmallModelIsCreated) {
  ASSERT_TRUE(fs::exists(tool())) << tool() << " missing; build target solo_create_llama";
  TempDir dir;
  const std::string out = dir.path() + "/m";
  const Result r = run("--output " + out +
                       " --hidden-size 64 --intermediate-size 128 --layers 1 --heads 4"
                       " --kv-heads 2 --vocab-size 100 --max-position-embeddings 32");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/config.json"));
}

// About 6e13 parameters, 220 TiB of f32 weights: refused at once, in one line that gives
// the bytes needed and available and what to change, with nothing written.
TEST(CreateLlama, ModelLargerThanMemoryIsRefusedBeforeAllocating) {
  ASSERT_TRUE(fs::exists(tool())) << tool() << " missing; build target solo_create_llama";
  TempDir dir;
  const std::string out = dir.path() + "/huge";
  const Result r = run("--output " + out +
                       " --hidden-size 65536 --intermediate-size 262144 --layers 1000"
                       " --heads 64 --kv-heads 8 --vocab-size 128000");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_LT(r.seconds, 30.0) << r.out;
  EXPECT_EQ(lines(r.out), 1u) << r.out;
  EXPECT_TRUE(r.out.starts_with("error: a Llama of ")) << r.out;
  for (const char* part :
       {" bytes (", " GiB) of host memory for its f32 weights and their copy while saving, but ",
        " are available: lower --hidden-size"})
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << r.out;
  EXPECT_EQ(r.out.find("bad_alloc"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out));
}

TEST(CreateLlama, BadSizesNameTheFlag) {
  ASSERT_TRUE(fs::exists(tool())) << tool() << " missing; build target solo_create_llama";
  TempDir dir;
  for (const auto& [flags, cause] : std::vector<std::pair<std::string, std::string>>{
           {"--hidden-size 0", "--hidden-size must be a positive integer, got 0"},
           {"--layers -2", "--layers must be a positive integer, got -2"},
           {"--hidden-size 100 --heads 6", "--hidden-size 100 is not a multiple of --heads 6"},
           {"--heads 6 --kv-heads 4", "--heads 6 is not a multiple of --kv-heads 4"}}) {
    const Result r = run("--output " + dir.path() + "/m " + flags);
    EXPECT_EQ(r.rc, 1) << flags << "\n" << r.out;
    EXPECT_NE(r.out.find("error: " + cause), std::string::npos) << flags << "\n" << r.out;
    EXPECT_EQ(lines(r.out), 1u) << r.out;
  }
}

}  // namespace
