// SentencePiece tokenizer (Llama-style BPE with byte fallback): loading, encoding and training.
//
// Training settings (train_tokenizer) follow Llama: model_type=bpe, byte_fallback=true,
// unk_id=0, bos_id=1, eos_id=2, and no pad piece (pad_id=-1), because padded positions are
// masked out anyway; pick any valid id (e.g. eos_id or 0) as the pad id when batching.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace solo::data {

class Tokenizer {
 public:
  // `path` is a SentencePiece .model file, or a directory holding tokenizer.model (the
  // Hugging Face layout). Throws solo::Error naming the path when it is missing or invalid.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                              bool add_eos = false) const;
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const;
  // -1 when the model has no such piece (SentencePiece's convention).
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  std::string id_to_piece(int32_t id) const;
  const std::string& path() const { return path_; }

 private:
  Tokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp, std::string path);
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
};

// Trains a BPE tokenizer on `documents` and writes `model_prefix`.model and `.vocab`
// (atomically, see core/atomic_file.h). Documents are split into lines for training;
// newlines are then encoded through byte fallback. Deterministic: one thread, input order kept,
// and the model does not record the output path, so the same input gives identical bytes.
void train_tokenizer(const std::vector<std::string>& documents, const std::string& model_prefix,
                     int vocab_size);
// Same, reading documents from a text file or directory (see corpus.h).
void train_tokenizer(const std::string& corpus_path, const std::string& model_prefix,
                     int vocab_size);

}  // namespace solo::data
