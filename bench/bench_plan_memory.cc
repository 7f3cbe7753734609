// What each plan holds per rank for a Llama training step, from its compiled program on the
// meta backend (no weights allocated): the parameter, gradient and optimizer-state bytes a
// rank keeps from one step to the next, the activation arena and the peak, for plain data
// parallelism, ZeRO 1-3 and recomputation over --ranks ranks. Default: the 58M Llama
// (hidden 512, 8 layers, vocab 32000, batch 8 x 256 per rank) on 4 ranks.
//   ./build/bench/bench_plan_memory [--ranks 4] [--batch 8] [--seq 256] [--layers 8]
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "solo/compile/program.h"
#include "solo/compile/zero.h"
#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"

using namespace solo;

int main(int argc, char** argv) {
  CLI::App app{"Memory per rank of each plan of a Llama training step"};
  int ranks = 4;
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
  app.add_option("--ranks", ranks)->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "rows per rank")->check(CLI::PositiveNumber);
  app.add_option("--seq", seq)->check(CLI::PositiveNumber);
  app.add_option("--layers", c.num_hidden_layers)->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  const Device meta = meta_device();
  models::LlamaForCausalLM model(c, 1, meta);
  optim::AdamW opt(model.parameters(), {.lr = 1e-4});
  const Tensor ids = Tensor::empty({batch, seq}, DType::I64, meta);
  for (int step = 0; step < 2; ++step) {  // the second step is the steady one
    const Tensor loss = model.forward(ids, {}, ids).loss;
    loss.backward();
    opt.step();
    opt.zero_grad();
    sync(meta);
  }
  const ir::Graph& step = *last_flush_graph(meta);
  std::vector<ir::ValueId> outputs;  // the loss, the updates, the gradients the program holds
  for (int n = 0; n < step.num_nodes(); ++n)
    if (step.node(n).op == OpKind::AdamWUpdate || step.node(n).op == OpKind::CrossEntropy)
      for (ir::ValueId v : step.node(n).outputs) outputs.push_back(v);
  for (ir::ValueId v : step.gradients()) outputs.push_back(v);

  auto mib = [](size_t b) { return static_cast<double>(b) / (1 << 20); };
  std::printf("Llama %lld parameters, %d ranks, %lld x %lld tokens per rank; MiB per rank:\n",
              static_cast<long long>(model.num_parameters()), ranks, static_cast<long long>(batch),
              static_cast<long long>(seq));
  std::printf("%-28s %10s %10s %10s %10s %10s %10s\n", "plan", "params", "grads", "optimizer",
              "held", "arena", "peak");
  double dp_held = 0;
  for (const char* spec : {"zero=0", "zero=1", "zero=2", "zero=3", "zero=3,recompute=block"}) {
    compile::PlanSpec plan = compile::parse_plan_spec(spec);
    plan.dp = ranks;
    const compile::Program p =
        compile::compile(compile::with_state_as_blocks(step, ranks, plan.zero), outputs, {}, plan);
    const double held = mib(p.resident.total());
    if (plan.zero == 0) dp_held = held;
    std::printf("%-28s %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f   held %.2fx of DP's\n",
                ("dp=" + std::to_string(ranks) + "," + spec).c_str(), mib(p.resident.parameters),
                mib(p.resident.gradients), mib(p.resident.optimizer_states), held,
                mib(p.memory.arena_bytes), mib(p.memory.peak_bytes()), held / dp_held);
  }
  return 0;
}
