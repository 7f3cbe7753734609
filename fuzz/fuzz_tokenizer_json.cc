// libFuzzer target: tokenizer.json text through BpeTokenizer::parse, then a few texts (and
// the input itself) encoded and decoded. A solo::Error is the expected answer to bad input;
// anything else (another exception, a crash, a sanitizer report, an id outside the
// vocabulary) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "solo/core/error.h"
#include "solo/data/bpe_tokenizer.h"

namespace {

void encode_decode(const solo::data::BpeTokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const solo::Error&) {
    return;  // not UTF-8, or a regex that gives up (match limit)
  }
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  try {
    tok.decode(ids);
  } catch (const solo::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<solo::data::BpeTokenizer> tok;
  try {
    tok = solo::data::BpeTokenizer::parse(text, "", "fuzz input");
  } catch (const solo::Error&) {
    return 0;
  }
  for (const char* sample :
       {"", "Hello, world! DON'T 123456 \t\n\n  x",
        "caf\xC3\xA9 cafe\xCC\x81 \xE2\x84\xAB \xF0\x9F\x91\x8D",
        "<|im_start|>user\nHi<|im_end|><|begin_of_text|><|eot_id|>", "\xE1\x84\x80\xE1\x85\xA1"})
    encode_decode(*tok, sample);
  encode_decode(*tok, text.substr(0, 256));
  for (int32_t id = 0; id < tok->vocab_size() && id < 64; ++id) {
    try {
      tok->id_to_piece(id);
    } catch (const solo::Error&) {
    }
  }
  return 0;
}
