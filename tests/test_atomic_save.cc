// Crash and race safety of saving: a checkpoint directory is replaced as a whole
// (io/staged_dir.h), so a save killed at any step leaves the old checkpoint or the new one
// loadable at the target, never a mix; two saves at once leave one complete checkpoint; and
// symlinks planted where a naive writer would write never redirect a write.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/io/staged_dir.h"
#include "solo/models/llama.h"

extern char** environ;

namespace solo {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kOneFile = uint64_t{1} << 30;
constexpr uint64_t kSharded = 4096;  // a few kB per shard: the new save has many files

// One save's identity: its seed, the MLP width its config.json gives, its tokenizer.
struct Save {
  uint64_t seed;
  int64_t intermediate;
  std::string tokenizer;  // the tokenizer.json text
  uint64_t max_shard_bytes;
};

const Save kOld{1, 32, "tokenizer A", kOneFile};
const Save kNew{2, 48, "tokenizer B", kSharded};

io::LlamaConfig config_of(const Save& s) {
  io::LlamaConfig c;
  c.hidden_size = 16;
  c.intermediate_size = s.intermediate;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.vocab_size = 64;
  c.max_position_embeddings = 16;
  c.rms_norm_eps = 1e-5;
  return c;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

std::vector<unsigned char> bytes_of(nn::Module& m) {
  std::vector<unsigned char> out;
  for (const auto& [name, p] : m.named_parameters()) {
    std::vector<unsigned char> b(static_cast<size_t>(p->numel()) * dtype_size(p->dtype()));
    p->copy_to_host(b.data());
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

class AtomicSave : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("solo_atomic_save_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "parent");
    for (const Save* s : {&kOld, &kNew}) {
      fs::create_directories(tokenizer_dir(*s));
      write(tokenizer_dir(*s) / "tokenizer.json", s->tokenizer);
    }
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path parent() const { return root_ / "parent"; }
  fs::path target() const { return parent() / "ckpt"; }
  fs::path tokenizer_dir(const Save& s) const {
    return root_ / ("tokenizer_" + std::to_string(s.seed));
  }

  // Starts save_probe writing `s` to the target with `env` added to the environment.
  pid_t start(const Save& s, const std::vector<std::string>& env) const {
    const std::string probe = (fs::canonical("/proc/self/exe").parent_path() / "save_probe");
    std::vector<std::string> args = {probe,
                                     target().string(),
                                     std::to_string(s.seed),
                                     std::to_string(s.intermediate),
                                     tokenizer_dir(s).string(),
                                     std::to_string(s.max_shard_bytes)};
    std::vector<std::string> vars = env;
    for (char** e = environ; *e; ++e) vars.emplace_back(*e);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    for (auto& v : vars) envp.push_back(v.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    return pid;
  }

  static int wait_for(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  }

  void save(const Save& s, const std::vector<std::string>& env = {}) const {
    const int status = wait_for(start(s, env));
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "save_probe failed: " << status;
  }

  // The save whose checkpoint is at the target, after checking that weights, config.json and
  // tokenizer all come from that one save.
  const Save* loaded() const {
    auto model = models::LlamaForCausalLM::from_pretrained(target().string());
    const Save* s = model->config().intermediate_size == kOld.intermediate ? &kOld : &kNew;
    EXPECT_EQ(model->config().intermediate_size, s->intermediate);
    models::LlamaForCausalLM expected(config_of(*s), s->seed);
    EXPECT_EQ(bytes_of(*model), bytes_of(expected)) << "weights of another save";
    EXPECT_EQ(read(target() / "tokenizer.json"), s->tokenizer) << "tokenizer of another save";
    return s;
  }

  // Entries of the parent other than the target.
  std::vector<std::string> strays() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(parent()))
      if (e.path() != target()) out.push_back(e.path().filename().string());
    return out;
  }

  fs::path root_;
};

// Each named step of a save, with the checkpoint a kill there must leave at the target.
struct KillPoint {
  const char* name;
  const Save* leaves;  // nullptr: the old one, put aside, is restored by the next save
};

TEST_F(AtomicSave, KillAtEachStepLeavesTheOldOrTheNewCheckpoint) {
  const std::vector<KillPoint> exchange = {
      {"save:stage_created", &kOld},  {"save:weights_written", &kOld},
      {"save:config_written", &kOld}, {"save:tokenizer_copied", &kOld},
      {"save:staged", &kOld},         {"save:swapped", &kNew},
      {"save:old_removed", &kNew}};
  std::vector<KillPoint> fallback = exchange;
  fallback.insert(fallback.begin() + 5, {"save:old_aside", nullptr});
  for (const bool can_exchange : {true, false}) {
    for (const KillPoint& point : can_exchange ? exchange : fallback) {
      SCOPED_TRACE(std::string(point.name) + (can_exchange ? "" : " without RENAME_EXCHANGE"));
      fs::remove_all(target());
      save(kOld);
      std::vector<std::string> env = {std::string("SOLO_TEST_KILL_AT=") + point.name};
      if (!can_exchange) env.push_back("SOLO_TEST_NO_RENAME_EXCHANGE=1");
      const int status = wait_for(start(kNew, env));
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
          << "the save was not killed at " << point.name << " (status " << status << ")";
      // What a kill leaves beside the target is hidden, so never taken for a checkpoint.
      for (const std::string& name : strays()) EXPECT_EQ(name[0], '.') << name;
      if (point.leaves) {
        EXPECT_EQ(loaded(), point.leaves);
      } else {
        EXPECT_FALSE(fs::exists(target()));
      }
      // The next save of the target (here one that is abandoned) cleans up after the dead one.
      { io::StagedDirectory next(target().string()); }
      EXPECT_EQ(strays(), std::vector<std::string>{});
      EXPECT_EQ(loaded(), point.leaves ? point.leaves : &kOld);
    }
  }
}

TEST_F(AtomicSave, TwoSavesAtOnceLeaveOneCompleteCheckpoint) {
  for (const bool can_exchange : {true, false}) {
    SCOPED_TRACE(can_exchange ? "with RENAME_EXCHANGE" : "without RENAME_EXCHANGE");
    std::vector<std::string> env;
    if (!can_exchange) env.push_back("SOLO_TEST_NO_RENAME_EXCHANGE=1");
    for (int round = 0; round < 4; ++round) {
      if (round % 2 == 0) fs::remove_all(target());  // racing to create, then to replace
      const pid_t a = start(kOld, env), b = start(kNew, env);
      const int sa = wait_for(a), sb = wait_for(b);
      EXPECT_TRUE(WIFEXITED(sa) && WEXITSTATUS(sa) == 0) << sa;
      EXPECT_TRUE(WIFEXITED(sb) && WEXITSTATUS(sb) == 0) << sb;
      loaded();
      EXPECT_EQ(strays(), std::vector<std::string>{});
    }
  }
}

TEST_F(AtomicSave, SymlinksPlantedInTheTargetNeverRedirectAWrite) {
  save(kOld);
  // A naive writer opens these names for writing (in place, or at "<name>.tmp") and would
  // write through the links into the victims.
  const fs::path victims = root_ / "victims";
  fs::create_directories(victims);
  const std::vector<std::string> names = {"model.safetensors",  "model.safetensors.tmp",
                                          "config.json",        "config.json.tmp",
                                          "tokenizer.json.tmp", "model.safetensors.index.json"};
  for (const std::string& name : names) {
    write(victims / name, "victim");
    fs::remove(target() / name);
    fs::create_symlink(victims / name, target() / name);
  }
  save(kNew);
  EXPECT_EQ(loaded(), &kNew);
  for (const std::string& name : names) EXPECT_EQ(read(victims / name), "victim") << name;
}

TEST(AtomicFile, PlantedSymlinkAtTheTemporaryNameIsNotWrittenThrough) {
  const fs::path dir = fs::temp_directory_path() / ("solo_atomic_file_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  write(dir / "victim", "victim");
  fs::create_symlink(dir / "victim", dir / "config.json.tmp");
  write_file_atomic((dir / "config.json").string(), std::string_view("new"));
  EXPECT_EQ(read(dir / "config.json"), "new");
  EXPECT_EQ(read(dir / "victim"), "victim");
  EXPECT_TRUE(fs::is_symlink(dir / "config.json.tmp"));  // not ours to remove
  // A write that fails (no such directory) names the path and the cause, and leaves nothing.
  try {
    write_file_atomic((dir / "missing" / "x").string(), std::string_view("x"));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "missing" / "x").string()), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos);
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 3);
  fs::remove_all(dir);
}

TEST_F(AtomicSave, SavingWhereTheModelWasLoadedFromKeepsItWhole) {
  save(kNew);  // sharded
  write(target() / "notes.txt", "the user's own file");
  auto model = models::LlamaForCausalLM::from_pretrained(target().string());
  const std::vector<unsigned char> before = bytes_of(*model);
  // Into one file this time: the old shards are mapped by `model` while they are replaced.
  model->save_pretrained(target().string(),
                         {.tokenizer_from = target().string(), .max_shard_bytes = kOneFile});
  EXPECT_EQ(bytes_of(*model), before);  // still readable: the mappings keep the old files
  EXPECT_EQ(loaded(), &kNew);
  EXPECT_TRUE(fs::exists(target() / "model.safetensors"));
  EXPECT_FALSE(fs::exists(target() / "model.safetensors.index.json"));
  for (const auto& e : fs::directory_iterator(target()))
    EXPECT_FALSE(e.path().filename().string().starts_with("model-")) << e.path();
  EXPECT_EQ(read(target() / "notes.txt"), "the user's own file");
  EXPECT_EQ(strays(), std::vector<std::string>{});
}

TEST_F(AtomicSave, KeepsTheUsersFilesAndDropsOldWeightsAndTemporaries) {
  save(kNew);  // sharded, with tokenizer B
  fs::create_directories(target() / "logs");
  write(target() / "logs" / "run.txt", "log");
  write(target() / "notes.txt", "notes");
  write(target() / "generation_config.json", "{}");
  write(target() / "model.safetensors.tmp", "a dead writer's");
  write(target() / "config.json.tmp.123.0.abcd", "a dead writer's");
  // Without tokenizer_from the tokenizer files already there are kept too.
  models::LlamaForCausalLM(config_of(kOld), kOld.seed)
      .save_pretrained(target().string(), {.tokenizer_from = "", .max_shard_bytes = kOneFile});
  auto model = models::LlamaForCausalLM::from_pretrained(target().string());
  models::LlamaForCausalLM expected(config_of(kOld), kOld.seed);
  EXPECT_EQ(bytes_of(*model), bytes_of(expected));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(target())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "generation_config.json", "logs",
                                             "model.safetensors", "notes.txt", "tokenizer.json"}));
  EXPECT_EQ(read(target() / "logs" / "run.txt"), "log");
  EXPECT_EQ(read(target() / "notes.txt"), "notes");
  EXPECT_EQ(read(target() / "tokenizer.json"), kNew.tokenizer);
  EXPECT_EQ(strays(), std::vector<std::string>{});
}

}  // namespace
}  // namespace solo
