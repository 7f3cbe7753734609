// solo_prepare_data: tokenizes a text or JSONL corpus into a token file (solo/data/token_file.h).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "solo/data/prepare.h"
#include "solo/data/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{"Tokenize a text corpus into a Solo token file"};
  std::string tokenizer_path, input, output, format = "text", field = "text";
  bool append_eos = false, prepend_bos = false;
  app.add_option("--tokenizer", tokenizer_path,
                 "tokenizer.json, SentencePiece .model file, or a directory containing "
                 "tokenizer.json or tokenizer.model")
      ->required();
  app.add_option("--input", input, "text/JSONL file, or a directory of them")->required();
  app.add_option("--format", format, "input format")
      ->check(CLI::IsMember({"text", "jsonl"}))
      ->capture_default_str();
  app.add_option("--jsonl-field", field, "JSONL field holding the text")->capture_default_str();
  app.add_option("--output", output, "token file to write")->required();
  app.add_flag("--append-eos", append_eos, "end every document with the EOS token");
  app.add_flag("--prepend-bos", prepend_bos, "start every document with the BOS token");
  CLI11_PARSE(app, argc, argv);

  try {
    auto tok = solo::data::Tokenizer::load(tokenizer_path);
    solo::data::PrepareOptions opt;
    opt.format = solo::data::corpus_format_from_name(format);
    opt.jsonl_field = field;
    opt.prepend_bos = prepend_bos;
    opt.append_eos = append_eos;
    auto stats = solo::data::prepare_token_file(tok, input, output, opt);
    std::printf("%s: %llu documents, %llu tokens (vocab %d)\n", output.c_str(),
                static_cast<unsigned long long>(stats.documents),
                static_cast<unsigned long long>(stats.tokens), tok.vocab_size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "solo_prepare_data: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
