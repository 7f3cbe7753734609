// Training-step throughput of a Llama on the cpu backend: forward, backward and AdamW as one
// graph per step. Default shapes are the 58M model of the single-device issue (hidden 512,
// 8 layers, 8 heads, FFN 1376, vocab 32000, seq 256, batch 8).
//   ./build/bench/bench_llama_step [--steps 5] [--batch 8] [--seq 256]
// Prints one line: "solo: <tokens/s> tokens/s, <s> s/step, <params> params".
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"

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
  CLI11_PARSE(app, argc, argv);

  models::LlamaForCausalLM model(c, 1);
  optim::AdamW opt(model.parameters(), {.lr = 1e-4});
  std::vector<int64_t> ids(static_cast<size_t>(batch * seq));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7919) % 32000);
  const Tensor input = Tensor::from_vector(ids, {batch, seq});
  auto step = [&] {
    const Tensor loss = model.forward(input, {}, input).loss;
    loss.backward();
    opt.step();
    opt.zero_grad();
    return loss.item();
  };
  step();  // warm-up: first-touch of weights, optimizer state allocation
  const auto start = std::chrono::steady_clock::now();
  double loss = 0;
  for (int i = 0; i < steps; ++i) loss = step();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
  std::printf("solo: %.1f tokens/s, %.3f s/step, %lld params, loss %.4f\n",
              static_cast<double>(batch * seq) / secs, secs,
              static_cast<long long>(model.num_parameters()), loss);
  return 0;
}
