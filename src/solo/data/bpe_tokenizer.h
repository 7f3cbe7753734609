// Byte-level BPE from a Hugging Face tokenizer.json (Llama 3, Mistral-Nemo, Qwen2/2.5/3,
// GPT-2), encoding as the `tokenizers` package does (tests/test_tokenizer_json.cc checks ids
// against it on 10,000 varied lines).
//
// Encoding: added tokens are matched as whole strings first, leftmost and then longest
// first (those with "normalized": true after normalization); the text between them is
// normalized (NFC, or nothing), split by the pre-tokenizer (Split regexes with behavior
// Isolated, then ByteLevel: a space before each piece with add_prefix_space, GPT-2's regex
// with use_regex), mapped to GPT-2's byte-to-unicode alphabet and merged by rank (lowest
// first, leftmost on ties) unless ignore_merges finds the whole piece in the vocabulary.
//
// Read: model BPE (vocab; merges as "a b" strings or ["a", "b"] pairs; unk_token, fuse_unk,
// ignore_merges; dropout null), added_tokens, normalizer null / NFC / Sequence of NFC,
// pre_tokenizer ByteLevel or Sequence of Split... then ByteLevel, decoder ByteLevel,
// post_processor null / ByteLevel / TemplateProcessing / Sequence of those (a template's one
// special token before $A is the BOS, after it the EOS). tokenizer_config.json's bos_token,
// eos_token, pad_token and unk_token (a string or {"content": ...}) win over those.
// Refused, naming the field: other model types, byte_fallback, dropout, subword prefixes or
// suffixes, any other normalizer, pre-tokenizer or decoder, Split behaviors other than
// Isolated or invert, added tokens with lstrip/rstrip/single_word, merges naming unknown
// tokens, unknown fields. truncation and padding are ignored (transformers sets them per
// call). Text to encode must be well-formed UTF-8.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "solo/data/regex.h"
#include "solo/data/tokenizer_impl.h"

namespace solo::data {

class BpeTokenizer final : public TokenizerImpl {
 public:
  // Reads `file` (tokenizer.json) and tokenizer_config.json beside it when present.
  static std::unique_ptr<BpeTokenizer> load(const std::string& file);
  // Parses tokenizer.json text; `config_json` is tokenizer_config.json's text, or empty for
  // none. `name` names the file in errors.
  static std::unique_ptr<BpeTokenizer> parse(std::string_view json, std::string_view config_json,
                                             const std::string& name);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  int32_t pad_id() const override { return pad_; }
  int32_t unk_id() const override { return unk_; }
  std::string id_to_piece(int32_t id) const override;

  struct Parser;  // bpe_tokenizer.cc

 private:
  BpeTokenizer() = default;

  struct AddedToken {
    std::string content;
    int32_t id;
  };
  // Added tokens by first byte, longest first (for leftmost-longest matching).
  using AddedIndex = std::array<std::vector<AddedToken>, 256>;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Merge {
    int32_t rank;
    int32_t id;
  };

  template <class F>
  void split_added(std::string_view text, const AddedIndex& index, std::vector<int32_t>& ids,
                   const F& on_text) const;
  void encode_normalized(std::string_view text, std::vector<int32_t>& ids) const;
  void bpe(std::string_view word, std::vector<int32_t>& ids) const;

  std::string name_;
  // Vocabulary: the piece as the file spells it, whether the id has one, and the bytes it
  // decodes to; raw bytes -> id for the pieces in the byte-level alphabet.
  std::vector<std::string> pieces_;
  std::vector<uint8_t> has_piece_;
  std::vector<std::string> decoded_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> byte_vocab_;
  std::array<int32_t, 256> byte_id_{};
  std::unordered_map<uint64_t, Merge> merges_;  // (left << 32 | right) -> rank, merged id
  AddedIndex added_raw_, added_normalized_;
  bool has_added_raw_ = false, has_added_normalized_ = false;
  bool nfc_ = false;
  std::vector<Regex> splits_;
  bool add_prefix_space_ = false;
  std::optional<Regex> byte_level_regex_;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  int32_t model_unk_ = -1;  // model.unk_token: what unknown characters become
  int32_t unk_ = -1, bos_ = -1, eos_ = -1, pad_ = -1;
};

}  // namespace solo::data
