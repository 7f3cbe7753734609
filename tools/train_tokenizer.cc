// solo_train_tokenizer: trains a Llama-style BPE SentencePiece tokenizer on a text corpus.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "solo/core/error.h"
#include "solo/data/corpus.h"
#include "solo/data/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{"Train a SentencePiece BPE tokenizer (writes PREFIX.model and PREFIX.vocab)"};
  std::string input, prefix, format = "text", field = "text";
  int vocab_size = 0;
  app.add_option("--input", input, "text/JSONL file, or a directory of them")->required();
  app.add_option("--vocab-size", vocab_size, "vocabulary size")
      ->required()
      ->check(CLI::PositiveNumber);
  app.add_option("--output-prefix", prefix, "output path prefix")->required();
  app.add_option("--format", format, "input format")
      ->check(CLI::IsMember({"text", "jsonl"}))
      ->capture_default_str();
  app.add_option("--jsonl-field", field, "JSONL field holding the text")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    auto docs =
        solo::data::read_documents(input, solo::data::corpus_format_from_name(format), field);
    SOLO_CHECK(!docs.empty(), "solo_train_tokenizer: ", input, " has no documents");
    solo::data::train_tokenizer(docs, prefix, vocab_size);
    std::printf("%s.model: vocab %d, trained on %zu documents\n", prefix.c_str(), vocab_size,
                docs.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "solo_train_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
