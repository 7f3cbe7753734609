// Creates a randomly initialised Llama in Hugging Face layout (config.json +
// model.safetensors), optionally with a tokenizer whose vocabulary size it takes.
//   solo_create_llama --output DIR --tokenizer tok.model --hidden-size 384 --layers 6 ...
// (--tokenizer also takes a tokenizer.json, or a directory holding either.)
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "solo/data/tokenizer.h"
#include "solo/models/llama.h"

namespace fs = std::filesystem;
using namespace solo;

int main(int argc, char** argv) {
  CLI::App app{"Create a random Llama checkpoint in Hugging Face layout"};
  std::string output, tokenizer;
  io::LlamaConfig c;
  c.hidden_size = 384;
  c.intermediate_size = 1024;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.vocab_size = 8000;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-5;
  uint64_t seed = 0;
  app.add_option("--output", output, "directory to write")->required();
  app.add_option("--tokenizer", tokenizer,
                 "tokenizer.json, tokenizer.model or a directory with one, to copy in (sets "
                 "--vocab-size)");
  app.add_option("--hidden-size", c.hidden_size);
  app.add_option("--intermediate-size", c.intermediate_size);
  app.add_option("--layers", c.num_hidden_layers);
  app.add_option("--heads", c.num_attention_heads);
  app.add_option("--kv-heads", c.num_key_value_heads);
  app.add_option("--vocab-size", c.vocab_size);
  app.add_option("--max-position-embeddings", c.max_position_embeddings);
  app.add_option("--seed", seed);
  CLI11_PARSE(app, argc, argv);
  try {
    std::string tokenizer_file;  // the file read, when --tokenizer names one
    if (!tokenizer.empty()) {
      const data::Tokenizer tok = data::Tokenizer::load(tokenizer);
      tokenizer_file = tok.path();
      c.vocab_size = tok.vocab_size();
      if (tok.bos_id() >= 0) c.bos_token_id = tok.bos_id();
      if (tok.eos_id() >= 0) c.eos_token_ids = {tok.eos_id()};
    }
    models::LlamaForCausalLM model(c, seed);
    model.save_pretrained(output);
    if (!tokenizer.empty()) {
      const fs::path from = tokenizer_file;
      const bool json = from.extension() == ".json";
      fs::copy_file(from, fs::path(output) / (json ? "tokenizer.json" : "tokenizer.model"),
                    fs::copy_options::overwrite_existing);
      // BOS/EOS/pad of a tokenizer.json come from the tokenizer_config.json beside it.
      const fs::path config = from.parent_path() / "tokenizer_config.json";
      if (json && fs::is_regular_file(config))
        fs::copy_file(config, fs::path(output) / "tokenizer_config.json",
                      fs::copy_options::overwrite_existing);
    }
    std::printf("[info] created a Llama with %lld parameters in %s\n",
                static_cast<long long>(model.num_parameters()), output.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
