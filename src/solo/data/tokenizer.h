// The tokenizer of a checkpoint: a SentencePiece model (tokenizer.model: Llama 1/2, Mistral
// 7B) or a Hugging Face tokenizer.json with a byte-level BPE model (Llama 3, Mistral-Nemo,
// Qwen2/2.5/3, GPT-2; what it supports is in bpe_tokenizer.h). Both sit behind one interface
// (tokenizer_impl.h); this class adds BOS/EOS and checks ids.
//
// SentencePiece training settings (train_tokenizer) follow Llama: model_type=bpe,
// byte_fallback=true, unk_id=0, bos_id=1, eos_id=2, and no pad piece (pad_id=-1), because
// padded positions are masked out anyway; pick any valid id (e.g. eos_id or 0) as the pad id
// when batching.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace solo::data {

class TokenizerImpl;

class Tokenizer {
 public:
  // `path` is a tokenizer.json file (any *.json name), a SentencePiece .model file, or a
  // directory holding either (the Hugging Face layout). A directory with both is read through
  // tokenizer.json: it is what transformers' fast tokenizer (the default) uses. BOS/EOS/pad
  // of a tokenizer.json come from tokenizer_config.json beside it when present. Throws
  // solo::Error naming the file, the cause and the fix when it is missing or invalid.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_bos/add_eos put bos_id()/eos_id() around the ids (an error when there is none).
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                              bool add_eos = false) const;
  // SentencePiece drops control pieces (BOS/EOS); tokenizer.json renders special tokens as
  // their text (transformers' decode with skip_special_tokens=False), so text holding
  // "<|im_start|>" decodes back to itself.
  std::string decode(const std::vector<int32_t>& ids) const;

  // One past the largest id.
  int32_t vocab_size() const;
  // -1 when the tokenizer has no such token.
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  std::string id_to_piece(int32_t id) const;
  // The file read (tokenizer.model or tokenizer.json, also when load was given a directory).
  const std::string& path() const { return path_; }

 private:
  Tokenizer(std::unique_ptr<TokenizerImpl> impl, std::string path);
  std::unique_ptr<TokenizerImpl> impl_;
  std::string path_;
};

// Trains a SentencePiece BPE tokenizer on `documents` and writes `model_prefix`.model and
// `.vocab` (atomically, see core/atomic_file.h). Documents are split into lines for training;
// newlines are then encoded through byte fallback. Deterministic: one thread, input order kept,
// and the model does not record the output path, so the same input gives identical bytes.
void train_tokenizer(const std::vector<std::string>& documents, const std::string& model_prefix,
                     int vocab_size);
// Same, reading documents from a text file or directory (see corpus.h).
void train_tokenizer(const std::string& corpus_path, const std::string& model_prefix,
                     int vocab_size);

}  // namespace solo::data
