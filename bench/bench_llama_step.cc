// Training-step throughput of a Llama on the cpu backend: forward, backward and AdamW as one
// graph per step. Default shapes are the 58M model of the single-device issue (hidden 512,
// 8 layers, 8 heads, FFN 1376, vocab 32000, seq 256, batch 8).
//   ./build/bench/bench_llama_step [--steps 5] [--batch 8] [--seq 256]
// Prints one line: "solo: <tokens/s> tokens/s, <s> s/step, <params> params".
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <optional>

#include "solo/core/error.h"
#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"
#include "solo/planner/op_cost.h"

using namespace solo;

int main(int argc, char** argv) {
  CLI::App app{"Llama training-step benchmark"};
  int steps = 5;
  int64_t batch = 8, seq = 256;
  io::LlamaConfig c;
  c.hidden_size = 512;
  c.intermediate_size = 1376;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.vocab_size = 32000;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  app.add_option("--steps", steps);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--layers", c.num_hidden_layers);
  app.add_option("--hidden", c.hidden_size);
  app.add_option("--ffn", c.intermediate_size);
  app.add_option("--heads", c.num_attention_heads);
  app.add_option("--kv-heads", c.num_key_value_heads);
  std::string device = "cpu";
  bool bf16 = false;
  double peak_tflops = 0;
  app.add_option("--device", device, "cpu or cuda");
  app.add_flag("--bf16", bf16, "bf16 mixed precision (autocast; f32 master weights)");
  app.add_option("--peak-tflops", peak_tflops, "device peak, to print MFU");
  std::string profile;
  app.add_option("--predict-on", profile,
                 "also print the roofline prediction of the step on a catalogue device "
                 "(h100, h200, a100-40, a100-80, mi250, mi210, mi300x)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (c.num_key_value_heads > c.num_attention_heads)
      c.num_key_value_heads = c.num_attention_heads;
    c.max_position_embeddings = std::max<int64_t>(c.max_position_embeddings, seq);

    const Device dev{device};
    models::LlamaForCausalLM model(c, 1, dev);
    optim::AdamW opt(model.parameters(), {.lr = 1e-4});
    std::vector<int64_t> ids(static_cast<size_t>(batch * seq));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7919) % 32000);
    const Tensor input = Tensor::from_vector(ids, {batch, seq}, dev);
    auto step = [&] {
      Tensor loss;
      {
        std::optional<AutocastGuard> autocast;
        if (bf16) autocast.emplace(DType::BF16);
        loss = model.forward(input, {}, input).loss;
      }
      loss.backward();
      opt.step();
      opt.zero_grad();
      return dev.type == "meta" ? 0.0 : loss.item();  // meta: host overhead only
    };
    // Warm-up: optimizer state (step 1 has its own graph), the memory plan of the steady step
    // (step 2) and, on cuda, its recording (step 3).
    for (int i = 0; i < 3; ++i) step();
    const auto start = std::chrono::steady_clock::now();
    double loss = 0;
    for (int i = 0; i < steps; ++i) loss = step();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
    const double tokens_per_s = static_cast<double>(batch * seq) / secs;
    // Training FLOPs per token: 6 N for the weights plus 12 L T H for attention scores.
    const double flops_per_token =
        6.0 * static_cast<double>(model.num_parameters()) +
        12.0 * static_cast<double>(c.num_hidden_layers * seq * c.hidden_size);
    std::printf("solo: %.1f tokens/s, %.3f s/step, %lld params, loss %.4f, %.1f TFLOP/s",
                tokens_per_s, secs, static_cast<long long>(model.num_parameters()), loss,
                tokens_per_s * flops_per_token / 1e12);
    if (peak_tflops > 0)
      std::printf(", MFU %.1f%%", 100.0 * tokens_per_s * flops_per_token / 1e12 / peak_tflops);
    std::printf(", peak memory %.2f GiB, %lld replayed steps\n",
                last_flush_peak_bytes(dev) / 1073741824.0,
                static_cast<long long>(replayed_flushes(dev)));
    if (!profile.empty()) {
      // The step graph's nodes at the device's roofline (a prediction, not a measurement).
      const planner::DeviceProfile& d = planner::device_profile(profile);
      const std::shared_ptr<const ir::Graph> g = last_flush_graph(dev);
      std::vector<ir::NodeId> nodes(static_cast<size_t>(g->num_nodes()));
      std::iota(nodes.begin(), nodes.end(), 0);
      const planner::StepEstimate e = planner::estimate_step(*g, nodes, d);
      const double predicted_tokens = static_cast<double>(batch * seq) / e.seconds;
      std::printf("predicted on %s: %.0f tokens/s, MFU %.1f%% (%s)\n", d.name.c_str(),
                  predicted_tokens,
                  100.0 * predicted_tokens * flops_per_token /
                      d.peak_flops(bf16 ? DType::BF16 : DType::F32),
                  e.str().c_str());
    }
  } catch (const solo::Error& e) {
    std::fprintf(stderr, "bench_llama_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
