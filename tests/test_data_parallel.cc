// Data parallelism end to end: the same examples/train_llama binary, neither edited nor
// rebuilt, runs 10 steps under the flavors cpu-1, cpu-2 and cpu-4 with the same global
// batch; every step's loss matches the cpu-1 run within 1e-4 relative. Also: a global batch
// that the ranks cannot split is a clear error.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "solo/data/token_file.h"
#include "solo/io/checkpoint.h"
#include "solo/models/llama.h"

namespace solo {
namespace {

namespace fs = std::filesystem;

fs::path build_dir() {
  return fs::canonical("/proc/self/exe").parent_path().parent_path();
}

struct RunResult {
  int status = -1;
  std::string output;
};

RunResult run(const std::string& command) {
  RunResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), static_cast<int>(buf.size()), pipe)) r.output += buf.data();
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The value after each "Loss: " of the log lines.
std::vector<double> losses(const std::string& output) {
  std::vector<double> out;
  const std::string key = "Loss: ";
  for (size_t at = output.find(key); at != std::string::npos; at = output.find(key, at + 1))
    out.push_back(std::stod(output.substr(at + key.size(), 32)));
  return out;
}

// Every step's loss of a run within `relative` of the reference's; the run must succeed.
void expect_losses_near(const RunResult& r, const std::vector<double>& reference, double relative,
                        const std::string& what) {
  ASSERT_EQ(r.status, 0) << what << "\n" << r.output;
  const std::vector<double> got = losses(r.output);
  ASSERT_EQ(got.size(), reference.size()) << what << "\n" << r.output;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], reference[i], relative * reference[i]) << what << " step " << i + 1;
}

class DataParallel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("solo_dp_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    std::mt19937 rng(5);
    std::vector<int32_t> tokens(40000);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % 256);
    const std::vector<uint64_t> docs = {0};
    data::write_token_file((dir_ / "train.tok").string(), tokens, docs,
                           data::token_dtype_for_vocab(256));
    io::LlamaConfig c;
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.vocab_size = 256;
    c.max_position_embeddings = 64;
    c.rms_norm_eps = 1e-5;
    models::LlamaForCausalLM(c, 3).save_pretrained((dir_ / "model").string());
  }
  static void TearDownTestSuite() {
    if (!std::getenv("SOLO_KEEP_TEST_FILES")) fs::remove_all(dir_);  // kept for debugging
  }

  static RunResult train(const std::string& flavor, int batch, const std::string& extra = "") {
    return run(train_command(flavor, batch, extra));
  }
  static std::string train_command(const std::string& flavor, int batch,
                                   const std::string& extra = "") {
    // Every run checks that each rank's measured peak is its memory plan's.
    std::string command = cache_env() + "SOLO_CHECK_MEMORY=1 SOLO_FLAVOR=" + flavor + " " +
                          (build_dir() / "examples" / "train_llama").string() +
                          " --model-name-or-path " + (dir_ / "model").string() + " --dataset " +
                          (dir_ / "train.tok").string() + " --batch-size " + std::to_string(batch) +
                          " --block-size 32 --log-interval 1";
    // Defaults that `extra` does not give itself (a flag may be given only once).
    for (const char* option : {" --max-steps 10", " --lr 1e-3"}) {
      const std::string flag = std::string(option).substr(0, std::string(option).rfind(' '));
      if (extra.find(flag + " ") == std::string::npos) command += option;
    }
    return command + extra;
  }
  // A Llama whose f32 parameters take 7 MiB, saved once.
  static fs::path model_7mib() {
    const fs::path model = dir_ / "model_7mib";
    if (fs::exists(model)) return model;
    io::LlamaConfig c;
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 4;
    c.vocab_size = 1024;
    c.max_position_embeddings = 64;
    c.rms_norm_eps = 1e-5;
    models::LlamaForCausalLM(c, 3).save_pretrained(model.string());
    return model;
  }
  // 10 steps of the 7 MiB Llama on `flavor` whose devices the inventory limits to `mib` MiB
  // (0: the default inventory, no limit).
  static std::string command_7mib(int mib, const std::string& flavor = "cpu-4") {
    std::string env = cache_env() + "SOLO_CHECK_MEMORY=1 SOLO_FLAVOR=" + flavor + " ";
    if (mib > 0) {
      const fs::path inventory = dir_ / ("inventory_" + std::to_string(mib) + "mib.json");
      std::ofstream f(inventory);
      f << R"({"hosts": [{"name": "box", "address": "127.0.0.1", "device_kind": "cpu",
                          "device_count": 4, "device_memory_gib": )"
        << mib / 1024.0 << R"(}],
               "flavors": [{"name": "cpu-4", "devices": 4, "device_kind": "cpu"}]})";
      env += "SOLO_INVENTORY=" + inventory.string() + " ";
    }
    return env + (build_dir() / "examples" / "train_llama").string() + " --model-name-or-path " +
           model_7mib().string() + " --dataset " + (dir_ / "train.tok").string() +
           " --batch-size 4 --block-size 32 --log-interval 1 --max-steps 10";
  }
  // The suite's own cache (CPU profiles, plans), so that no run of it finds another's plans.
  static std::string cache_env() { return "XDG_CACHE_HOME=" + (dir_ / "cache").string() + " "; }
  static inline fs::path dir_;
};

TEST_F(DataParallel, LossesMatchOneDeviceOnTwoAndFourDevices) {
  const RunResult one = train("cpu-1", 8);
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  for (const char* flavor : {"cpu-2", "cpu-4"}) {
    const RunResult r = train(flavor, 8);
    expect_losses_near(r, reference, 1e-4, flavor);
  }
}

// Mixed precision: each rank rounds its own half of the batch to bf16, so the agreement is
// to bf16 precision rather than f32's; the f32 master weights keep the runs together.
TEST_F(DataParallel, Bf16LossesMatchOneDeviceOnTwoDevices) {
  const RunResult one = train("cpu-1", 8, " --bf16");
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  const RunResult two = train("cpu-2", 8, " --bf16");
  ASSERT_EQ(two.status, 0) << two.output;
  const std::vector<double> got = losses(two.output);
  ASSERT_EQ(got.size(), reference.size()) << two.output;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], reference[i], 2e-4 * reference[i]) << "step " << i + 1;
}

// The largest difference between two saved checkpoints' f32 tensors (infinite when their
// names or shapes differ).
double checkpoint_difference(const fs::path& a, const fs::path& b) {
  const io::SafetensorsCheckpoint x = io::SafetensorsCheckpoint::open(a.string());
  const io::SafetensorsCheckpoint y = io::SafetensorsCheckpoint::open(b.string());
  if (x.tensors().size() != y.tensors().size()) return INFINITY;
  double worst = 0;
  for (const auto& [name, t] : x.tensors()) {
    if (!y.contains(name) || y.tensor(name).shape != t.shape || t.dtype != DType::F32)
      return INFINITY;
    std::vector<float> p(static_cast<size_t>(t.shape.numel())), q(p.size());
    std::memcpy(p.data(), t.bytes.data(), p.size() * sizeof(float));  // may be unaligned
    std::memcpy(q.data(), y.tensor(name).bytes.data(), q.size() * sizeof(float));
    for (size_t i = 0; i < p.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::fabs(p[i] - q[i])));
  }
  return worst;
}

// Plain DP and ZeRO 1, 2 and 3 forced with SOLO_PLAN on cpu-2 and cpu-4: every step's loss within
// 1e-4 relative of cpu-1's and the saved checkpoint within 1e-5 of cpu-1's (gathered from the
// ranks' blocks and written once).
TEST_F(DataParallel, ZeroPlansGiveOneDevicesLossesAndCheckpoint) {
  const fs::path reference_dir = dir_ / "saved_cpu1";
  const RunResult one = train("cpu-1", 8, " --save-model-dir " + reference_dir.string());
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  for (int devices : {2, 4})
    for (int zero : {0, 1, 2, 3}) {
      const std::string plan = "dp=" + std::to_string(devices) + ",zero=" + std::to_string(zero);
      const fs::path saved =
          dir_ / ("saved_" + std::to_string(devices) + "_" + std::to_string(zero));
      const RunResult r = run("SOLO_PLAN=" + plan + " " +
                              train_command("cpu-" + std::to_string(devices), 8,
                                            " --save-model-dir " + saved.string()));
      expect_losses_near(r, reference, 1e-4, plan);
      EXPECT_LE(checkpoint_difference(saved, reference_dir), 1e-5) << plan;
    }
}

// Recomputation per layer, alone on one device and with data parallelism on two and four
// (there with ZeRO-3): the replayed forward computes the same values, so the losses and the
// saved checkpoint are cpu-1's.
TEST_F(DataParallel, RecomputationGivesOneDevicesLossesAndCheckpoint) {
  const fs::path reference_dir = dir_ / "saved_cpu1_for_recompute";
  const RunResult one = train("cpu-1", 8, " --save-model-dir " + reference_dir.string());
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  for (const char* plan :
       {"dp=1,recompute=block", "dp=2,recompute=block", "dp=4,recompute=block,zero=3"}) {
    const std::string flavor = std::string("cpu-") + plan[3];
    const fs::path saved = dir_ / ("saved_recompute_" + flavor);
    const RunResult r = run(std::string("SOLO_PLAN=") + plan + " " +
                            train_command(flavor, 8, " --save-model-dir " + saved.string()));
    expect_losses_near(r, reference, 1e-4, plan);
    EXPECT_LE(checkpoint_difference(saved, reference_dir), 1e-5) << plan;
  }
}

// Tensor parallelism (Megatron's layout, found by the compile layer) alone on cpu-2, with
// recomputation, and under data parallelism on cpu-4 with ZeRO 0-3; pipeline parallelism
// (the blocks cut into stages by their FLOPs, activations and gradients over send/recv) alone
// on cpu-2, with recomputation, with DP (and ZeRO-1) and with TP on cpu-4, and DP x TP x PP
// on cpu-8: every step's loss within 1e-4 relative of cpu-1's, the checkpoint (each weight
// gathered from its blocks, on the stage that holds it) within 1e-5, and every rank's
// measured peak its plan's (SOLO_CHECK_MEMORY=1 in train_command).
TEST_F(DataParallel, TensorAndPipelineParallelPlansGiveOneDevicesLossesAndCheckpoint) {
  const fs::path reference_dir = dir_ / "saved_cpu1_for_tp_pp";
  const RunResult one = train("cpu-1", 8, " --save-model-dir " + reference_dir.string());
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  struct Row {
    const char* flavor;
    const char* plan;
    const char* logged;  // what the plan's log line must name
  };
  const Row rows[] = {
      {"cpu-2", "tp=2", "TP=2"},
      {"cpu-2", "tp=2,recompute=block", "TP=2"},
      {"cpu-4", "dp=2,tp=2", "TP=2"},
      {"cpu-4", "dp=2,tp=2,zero=1", "TP=2"},
      {"cpu-4", "dp=2,tp=2,zero=2,recompute=block", "TP=2"},
      {"cpu-4", "dp=2,tp=2,zero=3", "TP=2"},
      {"cpu-2", "pp=2", "PP=2"},
      {"cpu-2", "pp=2,recompute=block", "PP=2"},
      {"cpu-4", "dp=2,pp=2,zero=1", "PP=2"},
      {"cpu-4", "tp=2,pp=2", "PP=2 (1 micro-batch), TP=2"},
      {"cpu-8", "dp=2,tp=2,pp=2,zero=1", "DP=2, PP=2 (1 micro-batch), TP=2"},
  };
  for (const Row& row : rows) {
    const fs::path saved = dir_ / (std::string("saved_") + row.flavor + "_" + row.plan);
    const RunResult r = run(std::string("SOLO_PLAN=") + row.plan + " " +
                            train_command(row.flavor, 8, " --save-model-dir " + saved.string()));
    expect_losses_near(r, reference, 1e-4, row.plan);
    EXPECT_NE(r.output.find(row.logged), std::string::npos) << r.output;
    EXPECT_LE(checkpoint_difference(saved, reference_dir), 1e-5) << row.plan;
  }
}

// Four- and eight-way meshes on a model whose heads, KV heads, FFN width and vocabulary all
// split over 4: TP=4 on cpu-4, and DP=2 x TP=4 (with ZeRO-1) on cpu-8, whose tensor-parallel
// groups are ranks 0-3 and 4-7: cpu-1's losses with exact memory.
TEST_F(DataParallel, FourWayTensorParallelismOnFourAndEightDevices) {
  const RunResult one = run(command_7mib(0, "cpu-1"));
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  for (const auto& [flavor, plan] :
       {std::pair<const char*, const char*>{"cpu-4", "tp=4"}, {"cpu-8", "dp=2,tp=4,zero=1"}}) {
    const RunResult r = run(std::string("SOLO_PLAN=") + plan + " " + command_7mib(0, flavor));
    expect_losses_near(r, reference, 1e-4, plan);
  }
}

// A batch of one sequence cannot split over data-parallel ranks: the planner drops every DP
// candidate with that reason and chooses tensor or pipeline parallelism by itself (for this
// tiny model the two are predicted within a few percent of each other, so the measured
// profile decides which), with cpu-1's losses.
TEST_F(DataParallel, PlannerChoosesModelParallelismWhenTheBatchCannotSplit) {
  const RunResult one = train("cpu-1", 1);
  ASSERT_EQ(one.status, 0) << one.output;
  ASSERT_EQ(losses(one.output).size(), 10u) << one.output;
  const RunResult r = train("cpu-2", 1);
  expect_losses_near(r, losses(one.output), 1e-4, "batch 1 on cpu-2");
  EXPECT_NE(r.output.find("Best candidate selected in"), std::string::npos) << r.output;
  const bool tensor = r.output.find(": DP=1, No PP, TP=2") != std::string::npos;
  const bool pipeline = r.output.find(": DP=1, PP=2 (1 micro-batch), No TP") != std::string::npos;
  EXPECT_TRUE(tensor || pipeline) << r.output;
  EXPECT_NE(r.output.find("do not split evenly over 2"), std::string::npos) << r.output;
}

// A model of three heads (which two ranks cannot split) and a batch of one sequence (which
// data-parallel ranks cannot split): on cpu-2 the planner drops every DP and TP candidate
// with its reason and chooses pipeline parallelism by itself, with cpu-1's losses.
TEST_F(DataParallel, PlannerChoosesPipelineParallelismWhenNeitherBatchNorHeadsSplit) {
  const fs::path model = dir_ / "model_three_heads";
  io::LlamaConfig c;
  c.hidden_size = 48;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 3;
  c.num_key_value_heads = 3;
  c.vocab_size = 256;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  models::LlamaForCausalLM(c, 3).save_pretrained(model.string());
  auto command = [&](const std::string& flavor) {
    std::string line = "SOLO_PLAN_TABLE=1 " + train_command(flavor, 1);
    const std::string from = " --model-name-or-path " + (dir_ / "model").string();
    line.replace(line.find(from), from.size(), " --model-name-or-path " + model.string());
    return line;
  };
  const RunResult one = run(command("cpu-1"));
  ASSERT_EQ(one.status, 0) << one.output;
  ASSERT_EQ(losses(one.output).size(), 10u) << one.output;
  const RunResult r = run(command("cpu-2"));
  expect_losses_near(r, losses(one.output), 1e-4, "three heads, batch 1 on cpu-2");
  EXPECT_NE(r.output.find("Best candidate selected in"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(": DP=1, PP=2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("do not split evenly over 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not divide the 3 heads"), std::string::npos) << r.output;
}

// Under bf16 mixed precision each rank rounds its partial products and blocks to bf16 where one
// device rounds the whole, so the agreement is to bf16 precision (2e-4 relative, as for data
// parallelism); the f32 master weights keep the runs together.
TEST_F(DataParallel, TensorParallelBf16LossesMatchOneDevice) {
  const RunResult one = train("cpu-1", 8, " --bf16");
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  for (const auto& [flavor, plan] : {std::pair<const char*, const char*>{"cpu-2", "tp=2"},
                                     {"cpu-4", "dp=2,tp=2,zero=1"},
                                     {"cpu-2", "pp=2"}}) {
    const RunResult r =
        run(std::string("SOLO_PLAN=") + plan + " " + train_command(flavor, 8, " --bf16"));
    expect_losses_near(r, reference, 2e-4, plan);
  }
}

// A checkpoint saved under DP x TP (on cpu-4) and one saved under TP x PP (each stage's ranks
// holding the blocks of their layers only) load under plain DP, under the other plan and on
// one device, and give the next step's loss there: the saved files are plan-independent
// Hugging Face files.
TEST_F(DataParallel, ACheckpointSavedUnderTensorOrPipelineParallelismLoadsUnderAnyPlan) {
  for (const auto& [saved_under, loaded_under] :
       {std::pair<const char*, const char*>{"dp=2,tp=2,zero=1", "tp=2"}, {"tp=2,pp=2", "pp=2"}}) {
    const fs::path saved = dir_ / (std::string("saved_for_reload_") + saved_under);
    const RunResult trained =
        run(std::string("SOLO_PLAN=") + saved_under + " " +
            train_command("cpu-4", 8, " --max-steps 5 --save-model-dir " + saved.string()));
    ASSERT_EQ(trained.status, 0) << trained.output;
    auto next_loss = [&](const std::string& flavor, const std::string& plan) {
      std::string command = (plan.empty() ? "" : "SOLO_PLAN=" + plan + " ") +
                            train_command(flavor, 8, " --max-steps 1");
      const std::string from = " --model-name-or-path " + (dir_ / "model").string();
      command.replace(command.find(from), from.size(), " --model-name-or-path " + saved.string());
      const RunResult r = run(command);
      EXPECT_EQ(r.status, 0) << r.output;
      const std::vector<double> l = losses(r.output);
      return l.empty() ? -1.0 : l[0];
    };
    const double on_one = next_loss("cpu-1", "");
    ASSERT_GT(on_one, 0) << saved_under;
    EXPECT_NEAR(next_loss("cpu-2", "dp=2"), on_one, 1e-4 * on_one) << saved_under;
    EXPECT_NEAR(next_loss("cpu-2", loaded_under), on_one, 1e-4 * on_one) << saved_under;
  }
}

// ZeRO-3 with the bf16 copies of the parameters cast from the blocks and gathered in bf16,
// on two and four devices: as in the bf16 data-parallel test each rank rounds its own rows
// to bf16, so the agreement is to bf16 precision (2e-4 relative); the f32 master weights and
// states keep the runs together.
TEST_F(DataParallel, Zero3WithLowPrecisionShardingUnderBf16MatchesOneDevice) {
  const RunResult one = train("cpu-1", 8, " --bf16");
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  for (int devices : {2, 4}) {
    const std::string n = std::to_string(devices);
    const RunResult r =
        run("SOLO_PLAN=dp=" + n + ",zero=3,low_prec=1 " + train_command("cpu-" + n, 8, " --bf16"));
    expect_losses_near(r, reference, 2e-4, "cpu-" + n);
  }
}

// A checkpoint loaded under ZeRO-3 on cpu-4 stays in its mapped file until the first step,
// when each rank reads only its block of every parameter. With each device limited by the
// inventory to 12 MiB, which the 7 MiB of whole parameters plus what the ZeRO-3 step itself
// holds (10-12 MiB) would exceed, it trains; plain data parallelism, which holds everything
// whole on every rank, stops at its first step with the out-of-memory error.
TEST_F(DataParallel, MappedCheckpointTrainsUnderZero3WithinADeviceMemoryLimit) {
  const size_t parameter_bytes = fs::file_size(model_7mib() / "model.safetensors");
  ASSERT_GT(parameter_bytes, size_t{7} << 20);
  const std::string command = command_7mib(12);
  const RunResult zero3 = run("SOLO_PLAN=dp=4,zero=3 " + command);
  ASSERT_EQ(zero3.status, 0) << zero3.output;
  EXPECT_EQ(losses(zero3.output).size(), 10u) << zero3.output;
  const RunResult dp = run("SOLO_PLAN=dp=4 " + command);
  EXPECT_NE(dp.status, 0);
  // One line, though every rank runs out alike: the bytes asked for, those in use and the
  // limit, the device and what to change.
  const size_t at = dp.output.find("error: out of device memory on cpu rank ");
  ASSERT_NE(at, std::string::npos) << dp.output;
  EXPECT_EQ(count_of(dp.output, "out of device memory"), 1u) << dp.output;
  const std::string line = dp.output.substr(at, dp.output.find('\n', at) - at);
  EXPECT_NE(line.find(" bytes) asked for with "), std::string::npos) << line;
  EXPECT_NE(line.find(" in use of the device's 12 MiB; lower --batch-size or --block-size, or "
                      "switch to a flavor with more devices (solo switch)"),
            std::string::npos)
      << line;
  EXPECT_TRUE(losses(dp.output).empty()) << dp.output;
}

// Without SOLO_PLAN the planner compiles every candidate, drops those that do not fit the
// 12 MiB devices (plain DP among them) and picks one that shards (today TP=4, with the
// vocabulary-parallel embedding and loss; ZeRO-3 before tensor parallelism ran): the run trains
// with one device's losses, and its predicted peak is the measured one (SOLO_CHECK_MEMORY). Devices
// too small for any candidate stop the run before training with the smallest peak it would need.
TEST_F(DataParallel, PlannerPicksAPlanThatFitsTheDeviceMemory) {
  const RunResult one = run(command_7mib(0, "cpu-1"));
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  ASSERT_EQ(reference.size(), 10u) << one.output;
  const RunResult chosen = run(command_7mib(12));
  expect_losses_near(chosen, reference, 1e-4, "the planner's plan under 12 MiB");
  const size_t best = chosen.output.find("Best candidate selected");
  ASSERT_NE(best, std::string::npos) << chosen.output;
  const std::string line = chosen.output.substr(best, chosen.output.find('\n', best) - best);
  // Plain DP does not fit: the choice shards the state (ZeRO), the weights (TP) or the layers
  // (PP).
  EXPECT_TRUE(line.find("zero: 0") == std::string::npos ||
              line.find("No TP") == std::string::npos || line.find("No PP") == std::string::npos)
      << line;
  EXPECT_NE(chosen.output.find(" MiB of the device's 12.00 MiB)"), std::string::npos)
      << chosen.output;  // the reason of the dropped ones
  // The closed loop's first half: the measured step time against the prediction, once.
  const size_t measured = chosen.output.find("[info] Measured step ");
  EXPECT_NE(measured, std::string::npos) << chosen.output;
  EXPECT_EQ(chosen.output.find("[info] Measured step ", measured + 1), std::string::npos);
  const RunResult none = run(command_7mib(2));
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.output.find("no plan of 4 device(s) fits the device memory of 2 MiB: the "
                             "smallest, "),
            std::string::npos)
      << none.output;
  EXPECT_TRUE(losses(none.output).empty()) << none.output;
}

// The plan cache: a second run of the program on a flavor compiles the cached plan alone, says
// so, and trains alike; a changed step (another batch) searches again. `solo plan --all-flavors
// -- PROGRAM` plans the program's step for every flavor without training, and a run on one of
// them then starts from the cache, with one device's losses.
TEST_F(DataParallel, PlanCacheSkipsTheSearchOfASecondRunAndAllFlavorsFillsIt) {
  const RunResult one = train("cpu-1", 8);
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<double> reference = losses(one.output);
  // The command with its own cache (after the suite's, so that it wins).
  auto in_cache = [](const std::string& name, std::string command) {
    return command.insert(cache_env().size(), "XDG_CACHE_HOME=" + (dir_ / name).string() + " ");
  };
  const std::string searched = "[info] Best candidate selected";
  const std::string hit = "[info] Plan cache hit, search skipped";
  const RunResult first = run(in_cache("plan_cache", train_command("cpu-2", 8)));
  expect_losses_near(first, reference, 1e-4, "the first run on cpu-2");
  EXPECT_NE(first.output.find(searched), std::string::npos) << first.output;
  EXPECT_EQ(first.output.find(hit), std::string::npos) << first.output;
  const RunResult second = run(in_cache("plan_cache", train_command("cpu-2", 8)));
  expect_losses_near(second, reference, 1e-4, "the second run on cpu-2");
  EXPECT_NE(second.output.find(hit), std::string::npos) << second.output;
  EXPECT_EQ(second.output.find("[info] The number of candidates"), std::string::npos)
      << second.output;
  const RunResult other_batch = run(in_cache("plan_cache", train_command("cpu-2", 4)));
  ASSERT_EQ(other_batch.status, 0) << other_batch.output;
  EXPECT_NE(other_batch.output.find(searched), std::string::npos) << other_batch.output;

  const std::string program = (build_dir() / "examples" / "train_llama").string();
  std::string plan_all = in_cache("plan_cache_all", train_command("cpu-1", 8));
  plan_all.replace(plan_all.find(program), program.size(),
                   (build_dir() / "cli" / "solo").string() + " plan --all-flavors -- " + program);
  const RunResult planned = run(plan_all);
  ASSERT_EQ(planned.status, 0) << planned.output;
  EXPECT_TRUE(losses(planned.output).empty()) << planned.output;  // nothing trained
  for (const char* flavor : {"cpu-1", "cpu-2", "cpu-4", "cpu-8"})
    EXPECT_NE(planned.output.find(std::string("[info]   ") + flavor + " "), std::string::npos)
        << flavor << "\n"
        << planned.output;
  const RunResult started = run(in_cache("plan_cache_all", train_command("cpu-4", 8)));
  expect_losses_near(started, reference, 1e-4, "cpu-4 after solo plan --all-flavors");
  EXPECT_NE(started.output.find(hit), std::string::npos) << started.output;
}

// A learning rate of 1e30 makes the loss infinite or NaN within a few steps: training stops
// with one line naming the step, nothing is saved, and SOLO_CHECK_FINITE=1 names the op.
TEST_F(DataParallel, NonFiniteLossStopsTrainingAndSavesNothing) {
  for (const char* flavor : {"cpu-1", "cpu-2"}) {
    const fs::path saved = dir_ / (std::string("nan_") + flavor);
    const RunResult r =
        train(flavor, 8, " --lr 1e30 --max-grad-norm 0 --save-model-dir " + saved.string());
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("at step"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("nothing was saved"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(saved / "model.safetensors")) << flavor;
    EXPECT_FALSE(fs::exists(saved / "config.json")) << flavor;
    // Every rank fails alike: one line says so, without Open MPI's banners.
    size_t lines = 0;
    for (size_t at = r.output.find("error: "); at != std::string::npos;
         at = r.output.find("error: ", at + 1))
      ++lines;
    EXPECT_EQ(lines, 1u) << flavor << "\n" << r.output;
    EXPECT_EQ(r.output.find("-----"), std::string::npos) << flavor << "\n" << r.output;
  }
  const RunResult named =
      run("SOLO_CHECK_FINITE=1 " + train_command("cpu-1", 8, " --lr 1e30 --max-grad-norm 0"));
  EXPECT_NE(named.status, 0) << named.output;
  EXPECT_NE(named.output.find("SOLO_CHECK_FINITE: output"), std::string::npos) << named.output;
  EXPECT_NE(named.output.find("the first non-finite value"), std::string::npos) << named.output;
}

// A batch of 6 rows does not split over 4 data-parallel ranks: the planner drops those plans
// with that reason and runs one whose data-parallel ranks divide it (dp=2 x tp=2 or pp=2) with
// cpu-1's losses; forced, plain DP over 4 stops before training with the reason and the fix.
TEST_F(DataParallel, UnsplittableBatchIsAClearError) {
  const RunResult one = train("cpu-1", 6);
  ASSERT_EQ(one.status, 0) << one.output;
  const RunResult chosen = run("SOLO_PLAN_TABLE=1 " + train_command("cpu-4", 6));
  expect_losses_near(chosen, losses(one.output), 1e-4, "batch 6 on cpu-4");
  const size_t best = chosen.output.find("Best candidate selected in");
  ASSERT_NE(best, std::string::npos) << chosen.output;
  const std::string line = chosen.output.substr(best, chosen.output.find('\n', best) - best);
  EXPECT_TRUE(line.find(": DP=2, ") != std::string::npos ||
              line.find(": DP=1, ") != std::string::npos)
      << line;  // data-parallel ranks that divide 6 (with TP or PP over the rest)
  EXPECT_NE(chosen.output.find("do not split evenly over 4"), std::string::npos) << chosen.output;
  const RunResult r = run("SOLO_PLAN=dp=4 " + train_command("cpu-4", 6));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("the batch has 6 rows, which do not split evenly over 4 data-parallel "
                          "ranks; use a batch size that is a multiple of 4"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(losses(r.output).empty()) << r.output;
}

// SOLO_PLAN forces a plan: data parallelism over the flavor's devices runs with cpu-1's
// losses; one the flavor or this build cannot run stops before training, naming the reason.
TEST_F(DataParallel, ForcedPlansRunOrAreRefusedWithTheirReason) {
  const RunResult one = train("cpu-1", 8);
  ASSERT_EQ(one.status, 0) << one.output;
  const RunResult forced = run("SOLO_PLAN=dp=2 " + train_command("cpu-2", 8));
  ASSERT_EQ(forced.status, 0) << forced.output;
  const std::vector<double> reference = losses(one.output), got = losses(forced.output);
  ASSERT_EQ(got.size(), reference.size()) << forced.output;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], reference[i], 1e-4 * reference[i]) << "step " << i + 1;
  const RunResult too_many = run("SOLO_PLAN=dp=4 " + train_command("cpu-2", 8));
  EXPECT_NE(too_many.status, 0);
  EXPECT_NE(too_many.output.find("flavor has 2"), std::string::npos) << too_many.output;
  EXPECT_TRUE(losses(too_many.output).empty()) << too_many.output;
  const RunResult one_device = run("SOLO_PLAN=dp=2 " + train_command("cpu-1", 8));
  EXPECT_NE(one_device.status, 0);
  EXPECT_NE(one_device.output.find("flavor has 1"), std::string::npos) << one_device.output;
  const RunResult bad = run("SOLO_PLAN=dp=2,zero=9 " + train_command("cpu-2", 8));
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("zero=9"), std::string::npos) << bad.output;
}

// Bad values stop the program before it trains, naming the flag; so does a save directory
// that cannot be written (found now, not after the run).
TEST_F(DataParallel, BadFlagsAndUnwritableSaveDirectoriesStopBeforeTraining) {
  const std::string file = (dir_ / "train.tok").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --max-steps 0", "--max-steps must be a positive"},
      {" --lr nan", "--lr"},
      {" --max-grad-norm -1", "--max-grad-norm"},
      {" --weight-decay inf", "--weight-decay"},
      {" --warmup-steps -3", "--warmup-steps"},
      {" --save-model-dir " + file, "is not a directory"},
      {" --save-model-dir " + file + "/sub", "cannot be created"},
      {" --batch-size 99999999999999999999", "'99999999999999999999' is too large"},
      {" --seed 123456789012345678901234567890", "is too large"},
  };
  for (const auto& [flags, cause] : cases) {
    const RunResult r = run(train_command("cpu-1", 8, flags));
    EXPECT_NE(r.status, 0) << flags;
    EXPECT_NE(r.output.find(cause), std::string::npos) << flags << "\n" << r.output;
    EXPECT_TRUE(losses(r.output).empty()) << flags << "\n" << r.output;
  }
  // Paths of the wrong kind are named as such.
  const std::string train_llama = (build_dir() / "examples" / "train_llama").string();
  const std::string model = (dir_ / "model").string();
  for (const auto& [command, cause] : std::vector<std::pair<std::string, std::string>>{
           {train_llama + " --model-name-or-path " + model + " --dataset " + dir_.string(),
            "--dataset " + dir_.string() + " is a directory"},
           {train_llama + " --model-name-or-path " + file + " --dataset " + file,
            "--model-name-or-path " + file + " is not a directory"},
           {"SOLO_INVENTORY=" + dir_.string() + " " + train_command("cpu-1", 8),
            "inventory " + dir_.string() + " is a directory"}}) {
    const RunResult r = run("SOLO_FLAVOR=cpu-1 " + command);
    EXPECT_NE(r.status, 0) << command;
    EXPECT_NE(r.output.find(cause), std::string::npos) << command << "\n" << r.output;
  }
  const fs::path out = dir_ / "saved" / "nested";
  const RunResult ok =
      run(train_command("cpu-1", 8, " --max-steps 2 --save-model-dir " + out.string()));
  ASSERT_EQ(ok.status, 0) << ok.output;
  EXPECT_TRUE(fs::exists(out / "model.safetensors")) << ok.output;
  EXPECT_TRUE(fs::exists(out / "config.json")) << ok.output;
  for (const auto& entry : fs::directory_iterator(out))  // no probe or temporary file left
    EXPECT_EQ(entry.path().filename().string().rfind(".solo-write-check", 0), std::string::npos);
}

}  // namespace
}  // namespace solo
