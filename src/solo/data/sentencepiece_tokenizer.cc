#include "solo/data/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/data/corpus.h"
#include "solo/data/tokenizer.h"

namespace solo::data {

namespace {

// SentencePiece status messages can span lines; our errors are one line.
std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// Feeds training sentences (the non-empty lines of each document) in input order.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& docs) : docs_(docs) { advance(); }
  bool done() const override { return doc_ >= docs_.size(); }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void advance() {
    while (doc_ < docs_.size()) {
      const std::string& d = docs_[doc_];
      if (pos_ > d.size()) {
        ++doc_;
        pos_ = 0;
        continue;
      }
      size_t end = d.find('\n', pos_);
      if (end == std::string::npos) end = d.size();
      line_.assign(d, pos_, end - pos_);
      pos_ = end + 1;
      if (!line_.empty()) return;
    }
  }

  const std::vector<std::string>& docs_;
  size_t doc_ = 0;
  size_t pos_ = 0;
  std::string line_;
};

class SentencePieceTokenizer final : public TokenizerImpl {
 public:
  SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp,
                         std::string file)
      : sp_(std::move(sp)), file_(std::move(file)) {}

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    auto st = sp_->Encode(text, &ids);
    SOLO_CHECK(st.ok(), "tokenizer: ", file_, ": encode failed: ", one_line(st.ToString()));
    return std::vector<int32_t>(ids.begin(), ids.end());
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string text;
    auto st = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    SOLO_CHECK(st.ok(), "tokenizer: ", file_, ": decode failed: ", one_line(st.ToString()));
    return text;
  }
  int32_t vocab_size() const override { return sp_->GetPieceSize(); }
  int32_t bos_id() const override { return sp_->bos_id(); }
  int32_t eos_id() const override { return sp_->eos_id(); }
  int32_t pad_id() const override { return sp_->pad_id(); }
  int32_t unk_id() const override { return sp_->unk_id(); }
  std::string id_to_piece(int32_t id) const override { return sp_->IdToPiece(id); }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string file_;
};

}  // namespace

std::unique_ptr<TokenizerImpl> load_sentencepiece(const std::string& file) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto st = sp->Load(file);
  if (!st.ok()) {
    std::string why = st.error_message();
    // A protobuf parse failure reports only the failing source line; say what it means.
    if (why.find("ParseFromArray") != std::string::npos) why = "not a serialized ModelProto";
    SOLO_FAIL("tokenizer: ", file, " is not a valid SentencePiece model (", one_line(why), ")");
  }
  SOLO_CHECK(sp->GetPieceSize() > 0, "tokenizer: ", file, " is not a valid SentencePiece model",
             " (no pieces)");
  return std::make_unique<SentencePieceTokenizer>(std::move(sp), file);
}

void train_tokenizer(const std::vector<std::string>& documents, const std::string& model_prefix,
                     int vocab_size) {
  SOLO_CHECK(vocab_size > 0, "train_tokenizer: vocab_size must be positive, got ", vocab_size);
  SOLO_CHECK(!documents.empty(), "train_tokenizer: no documents to train on");
  // Llama-like BPE. The model comes back serialized and we write the files ourselves, so no
  // output path is recorded in it and its bytes do not depend on where it is written.
  std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "true"},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"num_threads", "1"},
      {"input_sentence_size", "10000000"},
      {"shuffle_input_sentence", "false"},
      {"max_sentence_length", "16384"},
      {"minloglevel", "2"},
  };
  LineIterator it(documents);
  std::string proto;
  auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
  SOLO_CHECK(st.ok(), "train_tokenizer: sentencepiece failed for ", model_prefix,
             ".model: ", one_line(st.ToString()));

  sentencepiece::SentencePieceProcessor sp;
  st = sp.LoadFromSerializedProto(proto);
  SOLO_CHECK(st.ok(), "train_tokenizer: trained model does not load: ", one_line(st.ToString()));
  std::string vocab;
  for (int i = 0; i < sp.GetPieceSize(); ++i) {
    vocab += sp.IdToPiece(i);
    vocab += '\t';
    vocab += std::to_string(static_cast<int64_t>(sp.GetScore(i)));
    vocab += '\n';
  }
  write_file_atomic(model_prefix + ".model", proto);
  write_file_atomic(model_prefix + ".vocab", vocab);
}

void train_tokenizer(const std::string& corpus_path, const std::string& model_prefix,
                     int vocab_size) {
  auto docs = read_documents(corpus_path);
  SOLO_CHECK(!docs.empty(), "train_tokenizer: ", corpus_path, " has no documents");
  train_tokenizer(docs, model_prefix, vocab_size);
}

}  // namespace solo::data
