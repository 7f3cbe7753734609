// Tokenizing a corpus into a token file: the work behind solo_prepare_data.
#pragma once
#include <cstdint>
#include <string>

#include "solo/data/corpus.h"
#include "solo/data/tokenizer.h"

namespace solo::data {

struct PrepareOptions {
  CorpusFormat format = CorpusFormat::Text;
  std::string jsonl_field = "text";
  bool prepend_bos = false;
  bool append_eos = false;
};

struct PrepareStats {
  uint64_t documents = 0;
  uint64_t tokens = 0;
};

// Encodes every document under `input` (see corpus.h) and writes `output` atomically; on error
// nothing is left at `output` (an existing file there is kept as it was).
PrepareStats prepare_token_file(const Tokenizer& tok, const std::string& input,
                                const std::string& output, const PrepareOptions& opt = {});

}  // namespace solo::data
