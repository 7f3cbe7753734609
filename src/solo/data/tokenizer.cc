#include "solo/data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/data/corpus.h"

namespace solo::data {
namespace fs = std::filesystem;

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

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp, std::string path)
    : sp_(std::move(sp)), path_(std::move(path)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  const char* hint = "; pass a SentencePiece .model file or a directory containing tokenizer.model";
  std::error_code ec;
  SOLO_CHECK(fs::exists(path, ec), "tokenizer: ", path, " does not exist", hint);
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    file = (fs::path(path) / "tokenizer.model").string();
    SOLO_CHECK(fs::exists(file, ec), "tokenizer: directory ", path, " has no tokenizer.model",
               hint);
  }
  SOLO_CHECK(fs::is_regular_file(file, ec), "tokenizer: ", file, " is not a regular file", hint);
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
  return Tokenizer(std::move(sp), file);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int> ids;
  auto st = sp_->Encode(text, &ids);
  SOLO_CHECK(st.ok(), "tokenizer: encode failed: ", one_line(st.ToString()));
  std::vector<int32_t> out;
  out.reserve(ids.size() + 2);
  if (add_bos) {
    SOLO_CHECK(bos_id() >= 0, "tokenizer: ", path_, " has no BOS piece; do not request one");
    out.push_back(bos_id());
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (add_eos) {
    SOLO_CHECK(eos_id() >= 0, "tokenizer: ", path_, " has no EOS piece; do not request one");
    out.push_back(eos_id());
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  int n = sp_->GetPieceSize();
  for (int32_t id : ids)
    SOLO_CHECK(id >= 0 && id < n, "tokenizer: decode got id ", id, " outside the vocabulary [0, ",
               n, ")");
  std::string text;
  auto st = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  SOLO_CHECK(st.ok(), "tokenizer: decode failed: ", one_line(st.ToString()));
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return sp_->GetPieceSize();
}
int32_t Tokenizer::bos_id() const {
  return sp_->bos_id();
}
int32_t Tokenizer::eos_id() const {
  return sp_->eos_id();
}
int32_t Tokenizer::pad_id() const {
  return sp_->pad_id();
}
int32_t Tokenizer::unk_id() const {
  return sp_->unk_id();
}
std::string Tokenizer::id_to_piece(int32_t id) const {
  SOLO_CHECK(id >= 0 && id < vocab_size(), "tokenizer: id ", id, " outside the vocabulary");
  return sp_->IdToPiece(id);
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
