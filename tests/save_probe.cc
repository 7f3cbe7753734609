// A tiny save for tests/test_atomic_save.cc, run as its own process so that a test can kill it
// (SOLO_TEST_KILL_AT, core/fault_point.h) or run two at once:
//   save_probe DIR SEED INTERMEDIATE_SIZE TOKENIZER_FROM MAX_SHARD_BYTES
// saves a one-layer Llama drawn with SEED (its MLP INTERMEDIATE_SIZE wide, so that configs of
// two saves differ) to DIR, with the tokenizer files of TOKENIZER_FROM.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "solo/models/llama.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr,
                 "usage: save_probe DIR SEED INTERMEDIATE_SIZE TOKENIZER_FROM MAX_SHARD_BYTES\n");
    return 2;
  }
  try {
    solo::io::LlamaConfig c;
    c.hidden_size = 16;
    c.intermediate_size = std::atoll(argv[3]);
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.vocab_size = 64;
    c.max_position_embeddings = 16;
    c.rms_norm_eps = 1e-5;
    solo::models::LlamaForCausalLM model(c, std::strtoull(argv[2], nullptr, 10));
    model.save_pretrained(argv[1], {.tokenizer_from = argv[4],
                                    .max_shard_bytes = std::strtoull(argv[5], nullptr, 10)});
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
