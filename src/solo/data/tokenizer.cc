#include "solo/data/tokenizer.h"

#include <filesystem>

#include "solo/core/error.h"
#include "solo/data/bpe_tokenizer.h"
#include "solo/data/sentencepiece_tokenizer.h"
#include "solo/data/tokenizer_impl.h"

namespace solo::data {
namespace fs = std::filesystem;

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl, std::string path)
    : impl_(std::move(impl)), path_(std::move(path)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  const char* hint =
      "; pass a tokenizer.json, a SentencePiece .model file, or a directory containing "
      "tokenizer.json or tokenizer.model";
  std::error_code ec;
  SOLO_CHECK(fs::exists(path, ec), "tokenizer: ", path, " does not exist", hint);
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    const fs::path json = fs::path(path) / "tokenizer.json";
    const fs::path model = fs::path(path) / "tokenizer.model";
    if (fs::exists(json, ec)) {
      file = json.string();
    } else {
      file = model.string();
      SOLO_CHECK(fs::exists(model, ec), "tokenizer: directory ", path,
                 " has no tokenizer.json or tokenizer.model", hint);
    }
  }
  SOLO_CHECK(fs::is_regular_file(file, ec), "tokenizer: ", file, " is not a regular file", hint);
  if (fs::path(file).extension() == ".json") return Tokenizer(BpeTokenizer::load(file), file);
  return Tokenizer(load_sentencepiece(file), file);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int32_t> ids = impl_->encode(text);
  if (add_bos) {
    SOLO_CHECK(bos_id() >= 0, "tokenizer: ", path_, " has no BOS token; do not request one");
    ids.insert(ids.begin(), bos_id());
  }
  if (add_eos) {
    SOLO_CHECK(eos_id() >= 0, "tokenizer: ", path_, " has no EOS token; do not request one");
    ids.push_back(eos_id());
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const int32_t n = vocab_size();
  for (int32_t id : ids)
    SOLO_CHECK(id >= 0 && id < n, "tokenizer: decode got id ", id, " outside the vocabulary [0, ",
               n, ")");
  return impl_->decode(ids);
}

int32_t Tokenizer::vocab_size() const {
  return impl_->vocab_size();
}
int32_t Tokenizer::bos_id() const {
  return impl_->bos_id();
}
int32_t Tokenizer::eos_id() const {
  return impl_->eos_id();
}
int32_t Tokenizer::pad_id() const {
  return impl_->pad_id();
}
int32_t Tokenizer::unk_id() const {
  return impl_->unk_id();
}
std::string Tokenizer::id_to_piece(int32_t id) const {
  SOLO_CHECK(id >= 0 && id < vocab_size(), "tokenizer: id ", id, " outside the vocabulary");
  return impl_->id_to_piece(id);
}

}  // namespace solo::data
