// The interface behind solo::data::Tokenizer: one implementation per file format
// (sentencepiece_tokenizer.h for tokenizer.model, bpe_tokenizer.h for tokenizer.json).
// Tokenizer checks ids against vocab_size() and adds BOS/EOS; implementations do the rest.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace solo::data {

class TokenizerImpl {
 public:
  virtual ~TokenizerImpl() = default;
  // The ids of `text`, without BOS/EOS.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Every id is in [0, vocab_size()).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  // -1 when there is no such token.
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual int32_t unk_id() const = 0;
  // `id` is in [0, vocab_size()).
  virtual std::string id_to_piece(int32_t id) const = 0;
};

}  // namespace solo::data
