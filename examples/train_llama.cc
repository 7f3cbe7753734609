// Fine-tunes (or pre-trains) a Llama checkpoint in Hugging Face layout on a token file, with
// the reference tutorial's command line:
//   ./build/examples/train_llama --model-name-or-path DIR --dataset data/train.tok
//       --num-train-epochs 1 --batch-size 8 --block-size 256 --lr 1e-4 --log-interval 10
//       --save-model-dir out/
// DIR holds config.json, model.safetensors (or shards) and optionally tokenizer files, which
// are copied next to the saved model. It is a single-device program: on a flavor of N
// devices Solo runs it as N ranks under the plan it compiles, with the same losses.
#include <CLI/CLI.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <new>
#include <optional>

#include "solo/core/error.h"
#include "solo/data/dataloader.h"
#include "solo/io/file_util.h"
#include "solo/models/llama.h"
#include "solo/optim/optimizer.h"
#include "solo/session/session.h"

using namespace solo;

namespace {
// CLI11 turns an integer too large for its type into the type's largest value; this refuses
// it instead, in a few words rather than the type's bounds.
template <class T>
CLI::Validator fits() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        T value{};
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec == std::errc::result_out_of_range) return "'" + text + "' is too large";
        (void)end;
        return "";
      },
      "");
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a Llama model (Hugging Face layout) on a token file"};
  std::string model_dir, dataset, save_dir;
  int epochs = 1, log_interval = 10;
  int64_t batch_size = 8, block_size = 256, max_steps = -1, warmup_steps = 0;
  double lr = 1e-4, weight_decay = 0.0, grad_clip = 1.0;
  uint64_t seed = 0;
  bool bf16 = false;
  app.add_option("--model-name-or-path", model_dir,
                 "directory with config.json + model.safetensors")
      ->required();
  app.add_option("--dataset", dataset, "token file written by solo_prepare_data")->required();
  app.add_option("--num-train-epochs", epochs, "passes over the dataset")
      ->check(CLI::PositiveNumber)
      ->check(fits<int>());
  app.add_option("--batch-size", batch_size, "global batch size (sequences per step)")
      ->check(CLI::PositiveNumber)
      ->check(fits<int64_t>());
  app.add_option("--block-size", block_size, "tokens per sequence")
      ->check(CLI::PositiveNumber)
      ->check(fits<int64_t>());
  app.add_option("--lr", lr, "peak learning rate")->check(CLI::NonNegativeNumber);
  app.add_option("--log-interval", log_interval, "steps between log lines")
      ->check(CLI::PositiveNumber)
      ->check(fits<int>());
  app.add_option("--save-model-dir", save_dir, "where to save the trained model (HF layout)");
  app.add_option("--max-steps", max_steps, "stop after this many steps (default: the epochs)")
      ->check(fits<int64_t>());
  app.add_option("--warmup-steps", warmup_steps, "linear warmup, then cosine decay to 10%")
      ->check(fits<int64_t>());
  app.add_option("--weight-decay", weight_decay, "AdamW weight decay");
  app.add_option("--max-grad-norm", grad_clip, "clip the global gradient norm (0: off)");
  app.add_option("--seed", seed, "shuffle seed")->check(fits<uint64_t>());
  app.add_flag("--bf16", bf16,
               "bf16 mixed precision: matmuls and attention in bf16, f32 weights and optimizer");
  CLI11_PARSE(app, argc, argv);

  try {
    // Bad values are refused before anything runs, naming the flag.
    auto finite_at_least_zero = [](double v, const char* flag) {
      SOLO_CHECK(std::isfinite(v) && v >= 0, flag, " must be a finite number >= 0, got ", v);
    };
    finite_at_least_zero(lr, "--lr");
    finite_at_least_zero(weight_decay, "--weight-decay");
    finite_at_least_zero(grad_clip, "--max-grad-norm");
    SOLO_CHECK(app.count("--max-steps") == 0 || max_steps > 0,
               "--max-steps must be a positive number of steps, got ", max_steps,
               "; leave it out to train for --num-train-epochs");
    SOLO_CHECK(warmup_steps >= 0, "--warmup-steps must be >= 0, got ", warmup_steps);
    // The save directory must be writable now, not after hours of training.
    SOLO_CHECK(std::filesystem::is_directory(model_dir), "--model-name-or-path ", model_dir,
               " is not a directory; give a checkpoint directory (config.json and "
               "model.safetensors)");
    SOLO_CHECK(!std::filesystem::is_directory(dataset), "--dataset ", dataset,
               " is a directory; give the token file that solo_prepare_data wrote");
    if (!save_dir.empty()) io::detail::ensure_writable_directory(save_dir, "--save-model-dir");
    // Joins the virtual accelerator of the current flavor; for N > 1 devices this relaunches
    // the program as N ranks and never returns here in the launching process.
    Session session(argc, argv);
    auto model = models::LlamaForCausalLM::from_pretrained(model_dir);
    const Device device = session.device();  // the accelerator's kind: cpu or cuda
    model->to(device);
    model->train();
    const data::TokenDataset data(dataset);
    data::BatchingOptions batching;
    batching.batch_size = batch_size;
    batching.shuffle = true;
    batching.seed = seed;
    data::DataLoader loader(data, block_size, batching);
    SOLO_CHECK(loader.num_batches() > 0, "dataset ", dataset, " has ", data.num_tokens(),
               " tokens, fewer than one batch of ", batch_size, " x ", block_size,
               "; lower --batch-size or --block-size");
    int64_t total = loader.num_batches() * epochs;
    if (max_steps > 0) total = std::min(total, max_steps);
    std::printf(
        "[info] model: %lld parameters, %lld layers; dataset: %lld tokens, %lld batches/epoch\n",
        static_cast<long long>(model->num_parameters()),
        static_cast<long long>(model->config().num_hidden_layers),
        static_cast<long long>(data.num_tokens()), static_cast<long long>(loader.num_batches()));

    optim::AdamW opt(model->parameters(), {.lr = lr, .weight_decay = weight_decay});
    optim::LRSchedule schedule{warmup_steps > 0 ? optim::LRSchedule::Kind::WarmupCosine
                                                : optim::LRSchedule::Kind::Constant,
                               warmup_steps, total, 0.1};
    data::Batch batch;
    double window_loss = 0, window_time = 0;
    int64_t window_steps = 0;
    for (int64_t step = 1; step <= total; ++step) {
      if (!loader.next(batch)) loader.next(batch);  // next epoch
      const auto start = std::chrono::steady_clock::now();
      const Tensor ids = Tensor::from_vector(batch.input_ids, batch.shape(), device).as_batch();
      const Tensor labels = Tensor::from_vector(batch.labels, batch.shape(), device).as_batch();
      const Tensor mask =
          Tensor::from_vector(batch.attention_mask, batch.shape(), device).as_batch();
      Tensor loss;
      {
        std::optional<AutocastGuard> autocast;
        if (bf16) autocast.emplace(DType::BF16);
        loss = model->forward(ids, mask, labels).loss;
      }
      loss.backward();
      if (grad_clip > 0) optim::clip_grad_norm(model->parameters(), grad_clip);
      opt.set_lr(lr * schedule.factor(step - 1));
      opt.step();  // runs forward, backward and update as one graph
      opt.zero_grad();
      const double l = loss.item();  // the global batch's loss
      // From a NaN or infinite loss on, every weight is poisoned: stop before anything is saved.
      SOLO_CHECK(std::isfinite(l), "the loss is ", l, " at step ", step,
                 "; training stopped and nothing was saved. Lower --lr or set --max-grad-norm; "
                 "SOLO_CHECK_FINITE=1 names the first op that makes a NaN or infinity");
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      window_loss += l;
      window_time += seconds;
      ++window_steps;
      if (step % log_interval == 0 || step == total || step == 1) {
        const double tokens = static_cast<double>(batch_size * batch.seq_len) * window_steps;
        std::printf(
            "| INFO | [Step %lld/%lld] | Loss: %.6f | Duration: %.3f | Throughput: %.1f "
            "tokens/sec\n",
            static_cast<long long>(step), static_cast<long long>(total), window_loss / window_steps,
            window_time / window_steps, tokens / window_time);
        std::fflush(stdout);
        session.report_memory();  // every rank's device memory, for `solo smi`
        window_loss = window_time = 0;
        window_steps = 0;
      }
    }
    if (!save_dir.empty()) {
      // One checkpoint, written once, swapped in whole: weights, config and tokenizer.
      model->save_pretrained(save_dir, {.tokenizer_from = model_dir});
      std::printf("[info] saved the model to %s\n", save_dir.c_str());
    }
    return 0;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "error: out of host memory; lower --batch-size or --block-size, or pick a "
                 "flavor with more devices (solo switch)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
