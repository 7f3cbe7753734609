#include "plan.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <type_traits>
#include <variant>

#include "solo/compile/model_search.h"
#include "solo/core/error.h"
#include "solo/io/hf_config.h"
#include "solo/models/gpt2.h"
#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"
#include "solo/planner/device_catalogue.h"
#include "solo/tensor/tensor.h"

namespace solo::cli {

namespace {

io::LlamaConfig llama(int64_t hidden, int64_t ffn, int64_t layers, int64_t heads, int64_t kv,
                      int64_t vocab, int64_t positions, double theta) {
  io::LlamaConfig c;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.vocab_size = vocab;
  c.max_position_embeddings = positions;
  c.rms_norm_eps = 1e-5;
  c.rope.theta = theta;
  return c;
}

io::Gpt2Config gpt2(int64_t hidden, int64_t layers, int64_t heads) {
  io::Gpt2Config c;
  c.n_embd = hidden;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_positions = 1024;
  c.vocab_size = 50257;
  return c;
}

// The built-in models: the shapes of the published configs.
const std::map<std::string, io::ModelConfig>& builtin_models() {
  static const std::map<std::string, io::ModelConfig> models = {
      {"llama2-7b", llama(4096, 11008, 32, 32, 32, 32000, 4096, 1e4)},
      {"llama2-13b", llama(5120, 13824, 40, 40, 40, 32000, 4096, 1e4)},
      {"llama2-70b", llama(8192, 28672, 80, 64, 8, 32000, 4096, 1e4)},
      {"llama3-8b", llama(4096, 14336, 32, 32, 8, 128256, 8192, 5e5)},
      {"llama3-70b", llama(8192, 28672, 80, 64, 8, 128256, 8192, 5e5)},
      {"gpt2", gpt2(768, 12, 12)},
      {"gpt2-medium", gpt2(1024, 24, 16)},
      {"gpt2-large", gpt2(1280, 36, 20)},
      {"gpt2-xl", gpt2(1600, 48, 25)},
  };
  return models;
}

io::ModelConfig model_config(const std::string& model) {
  const auto& models = builtin_models();
  if (auto it = models.find(model); it != models.end()) return it->second;
  std::string names;
  for (const auto& [name, config] : models) names += (names.empty() ? "" : ", ") + name;
  SOLO_CHECK(model.find('/') != std::string::npos || model.find(".json") != std::string::npos,
             "--model ", model, " is neither a built-in model (", names,
             ") nor a path to a config.json");
  return io::load_hf_config(model);
}

// The model's repeated blocks, and the config with `layers` of them and room for `seq`
// positions.
int64_t layers_of(const io::ModelConfig& c) {
  return std::visit(
      [](const auto& m) {
        if constexpr (std::is_same_v<std::decay_t<decltype(m)>, io::LlamaConfig>)
          return m.num_hidden_layers;
        else
          return m.n_layer;
      },
      c);
}
io::ModelConfig with_depth(io::ModelConfig c, int64_t layers, int64_t seq) {
  std::visit(
      [&](auto& m) {
        if constexpr (std::is_same_v<std::decay_t<decltype(m)>, io::LlamaConfig>) {
          m.num_hidden_layers = layers;
          m.max_position_embeddings = std::max(m.max_position_embeddings, seq);
        } else {
          m.n_layer = layers;
          m.n_positions = std::max(m.n_positions, seq);
        }
      },
      c);
  return c;
}

// The model of config `c` on the meta device (shapes only, nothing allocated).
std::unique_ptr<nn::Module> meta_model(const io::ModelConfig& c) {
  return std::visit(
      [](const auto& m) -> std::unique_ptr<nn::Module> {
        if constexpr (std::is_same_v<std::decay_t<decltype(m)>, io::LlamaConfig>)
          return std::make_unique<models::LlamaForCausalLM>(m, 0, meta_device());
        else
          return std::make_unique<models::Gpt2LMHeadModel>(m, 0, meta_device());
      },
      c);
}

models::CausalLMOutput forward(nn::Module& model, const Tensor& ids) {
  if (auto* llama = dynamic_cast<models::LlamaForCausalLM*>(&model))
    return llama->forward(ids, {}, ids);
  return dynamic_cast<models::Gpt2LMHeadModel&>(model).forward(ids, {}, ids);
}

// One training step of the model on the meta device, as the steps after the first are: the
// loss and the AdamW updates requested.
compile::TracedStep trace_step(const io::ModelConfig& c, int64_t batch, int64_t seq, bool bf16) {
  const Device meta = meta_device();
  const std::unique_ptr<nn::Module> model = meta_model(c);
  optim::AdamW opt(model->parameters(), {.lr = 1e-4});
  Tensor ids = Tensor::empty({batch, seq}, DType::I64, meta);
  ids.as_batch();
  for (int step = 0; step < 2; ++step) {  // the second step reads the state the first made
    Tensor loss;
    {
      std::optional<AutocastGuard> autocast;
      if (bf16) autocast.emplace(DType::BF16);
      loss = forward(*model, ids).loss;
    }
    loss.backward();
    opt.step();
    opt.zero_grad();
    sync(meta);
  }
  compile::TracedStep t;
  t.graph = last_flush_graph(meta);
  for (ir::NodeId n = 0; n < t.graph->num_nodes(); ++n) {
    const ir::Node& node = t.graph->node(n);
    if (node.op == OpKind::AdamWUpdate || node.op == OpKind::CrossEntropy)
      t.outputs.insert(t.outputs.end(), node.outputs.begin(), node.outputs.end());
  }
  return t;
}

int64_t parameters_of(const io::ModelConfig& c) {
  return meta_model(c)->num_parameters();
}

double gib(double bytes) {
  return bytes / (1u << 30);
}

}  // namespace

int cmd_plan_all_flavors(const PlanArgs& a) {
  SOLO_CHECK(!a.program.empty(),
             "--all-flavors plans a program's training step: give the program after --, e.g. "
             "`solo plan --all-flavors -- build/examples/train_llama --model-name-or-path ...`");
  SOLO_CHECK(a.model.empty(), "--all-flavors plans the program given after --, not --model ",
             a.model, ": drop one of them");
  std::vector<char*> argv;
  for (const std::string& arg : a.program) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  ::setenv("SOLO_PLAN_ALL_FLAVORS", "1", 1);
  ::execvp(argv[0], argv.data());
  SOLO_FAIL("cannot run ", a.program[0], ": ", std::strerror(errno));
}

int cmd_plan(const PlanArgs& a) {
  SOLO_CHECK(!a.model.empty(),
             "solo plan needs --model (a built-in or a config.json), or "
             "--all-flavors -- PROGRAM");
  SOLO_CHECK(a.program.empty(), "unexpected argument '", a.program.front(),
             "': a program is planned only with --all-flavors");
  SOLO_CHECK(a.devices >= 1, "--devices ", a.devices, " must be at least 1");
  SOLO_CHECK(a.batch >= 1 && a.seq >= 1, "--batch and --seq must be positive");
  SOLO_CHECK(a.precision == "fp32" || a.precision == "bf16-mixed", "--precision ", a.precision,
             " is not fp32 or bf16-mixed");
  planner::DeviceProfile profile =
      a.device == "cpu" ? compile::assumed_cpu_profile() : planner::device_profile(a.device);
  if (a.memory_gib > 0) profile.memory_bytes = a.memory_gib * (1u << 30);
  const io::ModelConfig config = model_config(a.model);
  const auto start = std::chrono::steady_clock::now();
  const bool bf16 = a.precision == "bf16-mixed";
  const int64_t parameters = parameters_of(config);
  SOLO_CHECK(a.devices_per_host >= 0, "--devices-per-host ", a.devices_per_host,
             " must be positive");
  const int per_host = a.devices_per_host > 0 ? a.devices_per_host
                       : a.device == "cpu"    ? a.devices
                                              : 8;
  SOLO_CHECK(a.devices % per_host == 0 || a.devices < per_host, "--devices ", a.devices,
             " do not fill hosts of ", per_host, "; use a multiple of --devices-per-host");
  compile::SearchOptions o;
  o.devices = a.devices;
  o.devices_per_host = std::min(per_host, a.devices);
  o.runnable_only = false;  // a dry run ranks what the compile layer can plan
  // Accelerators run NCCL, whose collectives overlap compute (the CPU's MPI ones do not).
  o.compile.async_collectives = a.device != "cpu";
  o.compile.half_sums = a.device != "cpu";  // NCCL (and RCCL) sum bf16
  if (!a.plan.empty()) {
    const compile::PlanSpec given = compile::parse_plan_spec(a.plan, "--plan");
    SOLO_CHECK(given.devices() == a.devices, "--plan ", a.plan, " uses ", given.devices(),
               " devices, not --devices ", a.devices, "; make dp x tp x pp equal it");
    o.plans = {given};
  }
  o.device_memory = static_cast<size_t>(profile.memory_bytes);
  o.steady = true;
  o.profile = profile;
  compile::ModelSearchOptions mo;
  mo.layers = static_cast<int>(layers_of(config));
  mo.batch = a.batch;
  mo.search = o;
  const compile::SearchResult r = compile::search_model(
      [&](int layers, int64_t batch) {
        return trace_step(with_depth(config, layers, a.seq), batch, a.seq, bf16);
      },
      mo);
  const double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  size_t fitting = 0;
  for (const compile::Candidate& c : r.candidates) fitting += c.fits;
  const double tokens = static_cast<double>(a.batch * a.seq);
  // MFU against the peak of the precision the matmuls run in.
  const double peak_flops =
      profile.peak_flops(a.precision == "bf16-mixed" ? DType::BF16 : DType::F32);
  // A step's model FLOPs: 6 per parameter and token (replays and attention not counted).
  const double model_flops = 6.0 * static_cast<double>(parameters) * tokens;
  std::vector<size_t> ranked;
  for (size_t i = 0; i < r.candidates.size(); ++i)
    if (r.candidates[i].fits) ranked.push_back(i);
  std::stable_sort(ranked.begin(), ranked.end(), [&](size_t x, size_t y) {
    return r.candidates[x].step_seconds < r.candidates[y].step_seconds;
  });
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"parameters", parameters},
                        {"device", a.device},
                        {"devices", a.devices},
                        {"candidates", r.candidates.size()},
                        {"feasible", fitting},
                        {"search_ms", r.compile_ms + r.select_ms},
                        {"total_ms", total_ms}};
    nlohmann::json dropped = nlohmann::json::array();
    for (const compile::Candidate& c : r.candidates)
      if (!c.fits) dropped.push_back({{"plan", c.plan.spec()}, {"reason", c.dropped}});
    j["dropped"] = dropped;
    if (r.chosen >= 0) {
      const compile::Candidate& b = r.best();
      const size_t held = b.resident.total();
      j["chosen"] = {{"dp", b.plan.dp},
                     {"tp", b.plan.tp},
                     {"pp", b.plan.pp},
                     {"micro_batches", b.plan.micro_batches},
                     {"runnable_now", b.not_runnable.empty()},
                     {"recompute", b.plan.recompute ? "block" : "none"},
                     {"zero", b.plan.zero},
                     {"low_prec", b.plan.low_prec},
                     {"peak_bytes_per_device", b.peak_bytes},
                     {"parameters_bytes", b.resident.parameters},
                     {"gradients_bytes", b.resident.gradients},
                     {"optimizer_states_bytes", b.resident.optimizer_states},
                     {"activations_workspace_bytes", b.peak_bytes > held ? b.peak_bytes - held : 0},
                     {"step_time_s", b.step_seconds},
                     {"tokens_per_s", tokens / b.step_seconds},
                     {"tflops_per_device", b.flops / b.step_seconds / 1e12},
                     {"mfu", model_flops / b.step_seconds / a.devices / peak_flops},
                     {"comm_bytes_per_step", b.comm_bytes},
                     {"comm_inter_host_bytes_per_step", b.comm_inter_host_bytes}};
    }
    std::cout << j.dump(2) << "\n";
    return r.chosen >= 0 ? 0 : 1;
  }
  std::printf(
      "solo plan: %s (%.2fB parameters) on %d x %s (%.0f GiB each), batch %lld x seq "
      "%lld, %s\n",
      a.model.c_str(), static_cast<double>(parameters) / 1e9, a.devices, profile.name.c_str(),
      gib(profile.memory_bytes), static_cast<long long>(a.batch), static_cast<long long>(a.seq),
      a.precision.c_str());
  std::cout << r.report();
  std::printf("%-4s  %-62s  %10s  %12s  %12s\n", "rank", "plan", "step (s)", "tokens/s",
              "peak (GiB)");
  for (size_t k = 0; k < ranked.size() && static_cast<int>(k) < a.top; ++k) {
    const compile::Candidate& c = r.candidates[ranked[k]];
    std::printf("%-4zu  %-62s  %10.3f  %12.0f  %12.2f%s\n", k + 1, c.plan.spec().c_str(),
                c.step_seconds, tokens / c.step_seconds, gib(static_cast<double>(c.peak_bytes)),
                c.not_runnable.empty() ? "" : "  *");
  }
  if (std::any_of(r.candidates.begin(), r.candidates.end(),
                  [](const compile::Candidate& c) { return c.fits && !c.not_runnable.empty(); }))
    std::printf("  * compiled and costed; this build's runtime cannot run it yet\n");
  if (r.chosen < 0) {
    const compile::Candidate* smallest = r.smallest();
    std::fflush(stdout);
    if (smallest)
      std::fprintf(stderr,
                   "error: no plan of %d device(s) fits %.1f GiB per device: the smallest, %s, "
                   "needs %.1f GiB; use more devices, a smaller batch or a shorter sequence\n",
                   a.devices, gib(profile.memory_bytes), smallest->plan.spec().c_str(),
                   gib(static_cast<double>(smallest->peak_bytes)));
    else
      std::fprintf(stderr, "error: no plan of %d device(s) can run this step: %s\n", a.devices,
                   r.candidates.front().dropped.c_str());
    return 1;
  }
  const compile::Candidate& b = r.best();
  const double held = static_cast<double>(b.resident.total());
  std::printf("Chosen: %s\n", b.plan.str().c_str());
  // Gradients live within the step (in the workspace) unless a step keeps them.
  std::printf(
      "  per device: parameters %.2f GiB, optimizer states %.2f GiB, kept gradients "
      "%.2f GiB, activations, gradients and workspace %.2f GiB; peak %.2f of %.0f GiB\n",
      gib(static_cast<double>(b.resident.parameters)),
      gib(static_cast<double>(b.resident.optimizer_states)),
      gib(static_cast<double>(b.resident.gradients)),
      gib(std::max(0.0, static_cast<double>(b.peak_bytes) - held)),
      gib(static_cast<double>(b.peak_bytes)), gib(profile.memory_bytes));
  std::printf(
      "  predicted step %.3f s, %.0f tokens/s, %.0f TFLOP/s a device computed (MFU %.0f%%), "
      "%.2f GiB sent a device per step; planned in %.0f ms (trace and search)\n",
      b.step_seconds, tokens / b.step_seconds, b.flops / b.step_seconds / 1e12,
      100 * model_flops / b.step_seconds / a.devices / peak_flops, gib(b.comm_bytes), total_ms);
  std::printf(
      "  communication a device per step: %.2f GiB within its host, %.2f GiB between hosts\n",
      gib(b.comm_bytes - b.comm_inter_host_bytes), gib(b.comm_inter_host_bytes));
  const int64_t layers = layers_of(config);
  for (int s = 0; s < b.plan.pp; ++s) {
    const int64_t first = layers * s / b.plan.pp, last = layers * (s + 1) / b.plan.pp;
    std::printf("  stage %d: layers %lld-%lld%s%s on devices %d-%d\n", s,
                static_cast<long long>(first), static_cast<long long>(last - 1),
                s == 0 ? " and the embedding" : "", s + 1 == b.plan.pp ? " and the head" : "",
                s * b.plan.dp * b.plan.tp, (s + 1) * b.plan.dp * b.plan.tp - 1);
  }
  return 0;
}

}  // namespace solo::cli
