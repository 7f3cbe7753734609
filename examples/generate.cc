// Greedy continuation of a prompt with a Llama checkpoint in Hugging Face layout (its
// directory must hold tokenizer.json or tokenizer.model).
//   ./build/examples/generate --model-name-or-path DIR --prompt "Q: Why" --max-new-tokens 40
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "solo/data/tokenizer.h"
#include "solo/models/llama.h"

using namespace solo;

int main(int argc, char** argv) {
  CLI::App app{"Greedy generation with a Llama model"};
  std::string model_dir, prompt;
  int max_new_tokens = 40;
  app.add_option("--model-name-or-path", model_dir,
                 "directory with config.json, model.safetensors, tokenizer.json or .model")
      ->required();
  app.add_option("--prompt", prompt, "text to continue")->required();
  app.add_option("--max-new-tokens", max_new_tokens, "tokens to generate")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    const data::Tokenizer tok = data::Tokenizer::load(model_dir);
    auto model = models::LlamaForCausalLM::from_pretrained(model_dir);
    model->eval();
    std::vector<int32_t> ids32 = tok.encode(prompt, /*add_bos=*/true);
    std::vector<int64_t> ids(ids32.begin(), ids32.end());
    const int64_t vocab = model->config().vocab_size;
    NoGradGuard no_grad;
    for (int i = 0; i < max_new_tokens; ++i) {
      if (static_cast<int64_t>(ids.size()) >= model->config().max_position_embeddings) break;
      const auto t = static_cast<int64_t>(ids.size());
      const Tensor logits = model->forward(Tensor::from_vector(ids, {1, t})).logits;
      const std::vector<float> last = slice(logits, 1, t - 1, t).to_vector();  // [V]
      const auto next =
          static_cast<int64_t>(std::max_element(last.begin(), last.begin() + vocab) - last.begin());
      if (next == tok.eos_id()) break;
      ids.push_back(next);
    }
    const std::vector<int32_t> out(ids.begin(), ids.end());
    std::printf("%s\n", tok.decode(out).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
