// Creates a randomly initialised Llama in Hugging Face layout (config.json +
// model.safetensors), optionally with a tokenizer whose vocabulary size it takes.
//   solo_create_llama --output DIR --tokenizer tok.model --hidden-size 384 --layers 6 ...
// (--tokenizer also takes a tokenizer.json, or a directory holding either.)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include "solo/core/error.h"
#include "solo/data/tokenizer.h"
#include "solo/models/llama.h"

namespace fs = std::filesystem;
using namespace solo;

namespace {

constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();

// The number in bytes of `key` in /proc/meminfo ("MemAvailable:  123 kB"), if listed.
std::optional<int64_t> meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  for (std::string name; in >> name;) {
    int64_t kib = 0;
    std::string unit;
    in >> kib >> unit;
    if (name == key + ":") return kib * 1024;
  }
  return std::nullopt;
}

// A number read from a cgroup v2 file ("max": no limit).
std::optional<int64_t> cgroup_value(const std::string& file) {
  std::ifstream in("/sys/fs/cgroup/" + file);
  std::string v;
  if (!(in >> v) || v == "max") return std::nullopt;
  try {
    return std::stoll(v);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Memory this process can still allocate: the kernel's MemAvailable, or less when the
// cgroup it runs in (a container) is limited.
int64_t available_memory_bytes() {
  int64_t available = meminfo_bytes("MemAvailable").value_or(kUnlimited);
  const auto limit = cgroup_value("memory.max");
  const auto used = cgroup_value("memory.current");
  if (limit && used) available = std::min(available, std::max<int64_t>(0, *limit - *used));
  return available;
}

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  return buf;
}

// Every size is positive and the heads divide as attention needs, said with the flag's name.
void check_sizes(const io::LlamaConfig& c) {
  for (auto [flag, v] : {std::pair{"--hidden-size", c.hidden_size},
                         {"--intermediate-size", c.intermediate_size},
                         {"--layers", c.num_hidden_layers},
                         {"--heads", c.num_attention_heads},
                         {"--kv-heads", c.num_key_value_heads},
                         {"--vocab-size", c.vocab_size},
                         {"--max-position-embeddings", c.max_position_embeddings}})
    SOLO_CHECK(v > 0, flag, " must be a positive integer, got ", v);
  SOLO_CHECK(c.hidden_size % c.num_attention_heads == 0, "--hidden-size ", c.hidden_size,
             " is not a multiple of --heads ", c.num_attention_heads);
  SOLO_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, "--heads ", c.num_attention_heads,
             " is not a multiple of --kv-heads ", c.num_key_value_heads);
}

// The model is built on the meta device first (shapes only), so that a size that does not
// fit this host's memory is refused before anything is allocated.
void check_memory(const io::LlamaConfig& c, uint64_t seed) {
  models::LlamaForCausalLM shapes(c, seed, meta_device());
  const int64_t params = shapes.num_parameters();
  // f32 weights, and as much again while they are written out (a run's peak is 2.2x).
  const int64_t needed =
      params > kUnlimited / 8 ? kUnlimited : params * 2 * static_cast<int64_t>(sizeof(float));
  const int64_t available = available_memory_bytes();
  SOLO_CHECK(needed <= available, "a Llama of ", params, " parameters needs ", needed, " bytes (",
             gib(needed), ") of host memory for its f32 weights and their copy while saving, but ",
             available, " bytes (", gib(available),
             ") are available: lower --hidden-size, --intermediate-size, --layers or "
             "--vocab-size");
}

}  // namespace

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
    check_sizes(c);
    check_memory(c, seed);
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
