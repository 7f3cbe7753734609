#include "solo/data/bpe_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

#include "solo/core/error.h"
#include "solo/core/printable.h"
#include "solo/data/unicode_nfc.h"
#include "solo/data/utf8.h"

namespace solo::data {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Ids past this are refused: the largest vocabularies have about 256k entries.
constexpr int64_t kMaxVocab = int64_t{1} << 24;

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68
// bytes for U+0100 onwards, in byte order (so a space is U+0120 'Ġ').
struct ByteAlphabet {
  std::array<char32_t, 256> char_of{};
  std::array<int16_t, 0x144> byte_of{};  // code point -> byte, -1 for none
  ByteAlphabet() {
    byte_of.fill(-1);
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      char_of[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : extra++;
      byte_of[char_of[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

// The bytes a piece spelled in the byte-level alphabet stands for, or nullopt when a
// character of it is outside the alphabet.
std::optional<std::string> alphabet_bytes(const std::string& piece) {
  std::string out;
  for (char32_t cp : utf8_code_points(piece)) {
    if (cp >= alphabet().byte_of.size() || alphabet().byte_of[cp] < 0) return std::nullopt;
    out += static_cast<char>(alphabet().byte_of[cp]);
  }
  return out;
}

std::string in_quotes(std::string_view s) {
  std::string out(1, '"');
  out += printable(s);
  out += '"';
  return out;
}

std::string read_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  SOLO_CHECK(in, "tokenizer: cannot open ", file, "; check the path and its permissions");
  std::ostringstream ss;
  ss << in.rdbuf();
  SOLO_CHECK(!in.bad(), "tokenizer: reading ", file, " failed; check the file");
  return ss.str();
}

}  // namespace

// Reads tokenizer.json into a BpeTokenizer; every refusal names the file and the field.
struct BpeTokenizer::Parser {
  BpeTokenizer& t;
  const std::string& name;
  std::string config_name;
  std::unordered_map<std::string, int32_t> vocab;  // model.vocab, as spelled in the file
  std::unordered_map<std::string, int32_t> added;  // added token content -> id
  int32_t template_bos = -1, template_eos = -1;

  template <class... A>
  [[noreturn]] void fail(const A&... a) const {
    SOLO_FAIL("tokenizer: ", name, ": ", a...);
  }

  json parse_json(std::string_view text, const std::string& what) const {
    try {
      return json::parse(text);
    } catch (const json::parse_error& e) {
      SOLO_FAIL("tokenizer: ", what, " is not valid JSON (", printable(e.what()),
                "); fix or replace the file");
    }
  }

  void object(const json& j, const std::string& path) const {
    if (!j.is_object()) fail(path, " is not a JSON object; fix the file");
  }
  void only_keys(const json& j, const std::string& path,
                 std::initializer_list<std::string_view> keys) const {
    for (const auto& [key, value] : j.items()) {
      if (std::find(keys.begin(), keys.end(), key) == keys.end())
        fail(path, ".", printable(key),
             " is not a field Solo knows, so it cannot tell whether it changes the ids; "
             "remove it if it has no effect");
    }
  }
  // j[key] or nullptr when absent or null.
  static const json* find(const json& j, const char* key) {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  bool get_bool(const json& j, const char* key, const std::string& path, bool fallback) const {
    const json* v = find(j, key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(path, ".", key, " is not true or false; fix the file");
    return v->get<bool>();
  }
  std::string get_string(const json& j, const char* key, const std::string& path) const {
    const json* v = find(j, key);
    if (!v || !v->is_string()) fail(path, ".", key, " is missing or not a string; fix the file");
    return v->get<std::string>();
  }
  std::string type_of(const json& j, const std::string& path) const {
    object(j, path);
    return get_string(j, "type", path);
  }
  int32_t get_id(const json& v, const std::string& path) const {
    if (!v.is_number_integer()) fail(path, " is not an integer id; fix the file");
    if (v.is_number_unsigned() ? v.get<uint64_t>() >= static_cast<uint64_t>(kMaxVocab)
                               : (v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxVocab))
      fail(path, " = ", v.dump(), " is not an id in [0, ", kMaxVocab, "); fix the file");
    return static_cast<int32_t>(v.get<int64_t>());
  }

  void run(std::string_view text, std::string_view config_text) {
    const json root = parse_json(text, name);
    object(root, "the top level");
    only_keys(root, "the top level",
              {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
               "model", "post_processor", "decoder"});
    const json* model = find(root, "model");
    if (!model) fail("has no \"model\"; it is not a tokenizer.json");
    parse_model(*model);
    if (const json* a = find(root, "added_tokens")) parse_added_tokens(*a);
    finish_vocabulary();
    parse_merges(*model);
    if (const json* n = find(root, "normalizer")) parse_normalizer(*n, "normalizer");
    const json* pre = find(root, "pre_tokenizer");
    if (!pre)
      fail("pre_tokenizer is null; Solo reads byte-level BPE, whose pre_tokenizer is ByteLevel ",
           "or a Sequence ending in ByteLevel");
    parse_pre_tokenizer(*pre);
    const json* dec = find(root, "decoder");
    if (!dec) fail("decoder is null; Solo decodes byte-level BPE with the ByteLevel decoder");
    const std::string dtype = type_of(*dec, "decoder");
    if (dtype != "ByteLevel")
      fail("decoder.type ", in_quotes(dtype),
           " is not supported; Solo decodes byte-level BPE with the ByteLevel decoder");
    only_keys(*dec, "decoder", {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    if (const json* pp = find(root, "post_processor")) parse_post_processor(*pp, "post_processor");
    t.bos_ = template_bos;
    t.eos_ = template_eos;
    if (!config_text.empty()) parse_config(config_text);
  }

  void parse_model(const json& m) {
    const std::string type = type_of(m, "model");
    if (type != "BPE")
      fail("model.type ", in_quotes(type),
           " is not supported (Solo reads byte-level BPE from tokenizer.json); use a BPE "
           "tokenizer, or the checkpoint's SentencePiece tokenizer.model");
    only_keys(m, "model",
              {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
               "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"});
    if (const json* d = find(m, "dropout"); d && !(d->is_number() && d->get<double>() == 0.0))
      fail("model.dropout ", d->dump(),
           " is not supported (BPE dropout is random); set it to null");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json* v = find(m, key);
      if (v && !(v->is_string() && v->get<std::string>().empty()))
        fail("model.", key, " ", printable(v->dump()),
             " is not supported (byte-level BPE has none); Solo cannot read this tokenizer");
    }
    if (get_bool(m, "byte_fallback", "model", false))
      fail(
          "model.byte_fallback true is not supported (byte-level BPE has no byte fallback); "
          "use the checkpoint's SentencePiece tokenizer.model");
    t.ignore_merges_ = get_bool(m, "ignore_merges", "model", false);
    t.fuse_unk_ = get_bool(m, "fuse_unk", "model", false);
    const json* v = find(m, "vocab");
    if (!v || !v->is_object()) fail("model.vocab is missing or not an object; fix the file");
    for (const auto& [piece, id] : v->items())
      vocab[piece] = get_id(id, "model.vocab[" + in_quotes(piece) + "]");
  }

  void parse_added_tokens(const json& a) {
    if (!a.is_array()) fail("added_tokens is not an array; fix the file");
    for (size_t i = 0; i < a.size(); ++i) {
      const std::string path = "added_tokens[" + std::to_string(i) + "]";
      object(a[i], path);
      only_keys(a[i], path,
                {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"});
      const json* id = find(a[i], "id");
      if (!id) fail(path, ".id is missing; fix the file");
      const int32_t token = get_id(*id, path + ".id");
      const std::string content = get_string(a[i], "content", path);
      if (content.empty()) fail(path, ".content is empty; fix the file");
      for (const char* key : {"single_word", "lstrip", "rstrip"}) {
        if (get_bool(a[i], key, path, false))
          fail(path, " (", in_quotes(content), ") has ", key,
               " true, which Solo does not support; Solo cannot read this tokenizer");
      }
      const bool normalized = get_bool(a[i], "normalized", path, true);
      get_bool(a[i], "special", path, false);  // only decoding with skip_special_tokens reads it
      added.emplace(content, token);
      (normalized ? t.added_normalized_ : t.added_raw_)[static_cast<uint8_t>(content[0])].push_back(
          {content, token});
      (normalized ? t.has_added_normalized_ : t.has_added_raw_) = true;
      if (static_cast<size_t>(token) >= t.pieces_.size()) {
        t.pieces_.resize(static_cast<size_t>(token) + 1);
        t.has_piece_.resize(static_cast<size_t>(token) + 1);
      }
      t.pieces_[static_cast<size_t>(token)] = content;  // added tokens win over model.vocab
      t.has_piece_[static_cast<size_t>(token)] = 2;
    }
    for (AddedIndex* index : {&t.added_raw_, &t.added_normalized_}) {
      for (auto& bucket : *index)
        std::stable_sort(bucket.begin(), bucket.end(), [](const auto& x, const auto& y) {
          return x.content.size() > y.content.size();
        });
    }
  }

  void finish_vocabulary() {
    int32_t max_id = -1;
    for (const auto& [piece, id] : vocab) max_id = std::max(max_id, id);
    if (static_cast<size_t>(max_id + 1) > t.pieces_.size()) {
      t.pieces_.resize(static_cast<size_t>(max_id) + 1);
      t.has_piece_.resize(static_cast<size_t>(max_id) + 1);
    }
    if (t.pieces_.empty()) fail("model.vocab and added_tokens are empty; fix the file");
    // Real vocabularies are dense; a sparse one is a broken file (and would cost memory).
    const size_t entries = vocab.size() + added.size();
    if (t.pieces_.size() > 2 * entries + 1024)
      fail("the largest id is ", t.pieces_.size() - 1, " but there are only ", entries,
           " tokens; fix the ids");
    t.byte_id_.fill(-1);
    for (const auto& [piece, id] : vocab) {
      const auto i = static_cast<size_t>(id);
      if (t.has_piece_[i] != 2) {
        t.pieces_[i] = piece;
        t.has_piece_[i] = 1;
      }
      if (auto bytes = alphabet_bytes(piece)) {
        if (bytes->size() == 1) t.byte_id_[static_cast<uint8_t>((*bytes)[0])] = id;
        t.byte_vocab_.emplace(std::move(*bytes), id);
      }
    }
    // What the ByteLevel decoder makes of each token: the bytes its characters stand for, or
    // its own UTF-8 when a character is outside the alphabet.
    t.decoded_.resize(t.pieces_.size());
    for (size_t i = 0; i < t.pieces_.size(); ++i) {
      if (!t.has_piece_[i]) continue;
      auto bytes = alphabet_bytes(t.pieces_[i]);
      t.decoded_[i] = bytes ? std::move(*bytes) : t.pieces_[i];
    }
  }

  int32_t model_token(const std::string& piece, const std::string& path) const {
    auto it = vocab.find(piece);
    if (it == vocab.end())
      fail(path, " names ", in_quotes(piece), ", which is not in model.vocab; fix the file");
    return it->second;
  }

  void parse_merges(const json& m) {
    if (const json* u = find(m, "unk_token")) {
      if (!u->is_string()) fail("model.unk_token is not a string; fix the file");
      t.model_unk_ = model_token(u->get<std::string>(), "model.unk_token");
      t.unk_ = t.model_unk_;
    }
    const json* merges = find(m, "merges");
    if (!merges) return;
    if (!merges->is_array()) fail("model.merges is not an array; fix the file");
    t.merges_.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const json& e = (*merges)[i];
      const std::string path = "model.merges[" + std::to_string(i) + "]";
      std::string a, b;
      if (e.is_string()) {  // "a b" (transformers 4)
        const std::string s = e.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos)
          fail(path, " ", in_quotes(s), " is not two tokens separated by a space; fix the file");
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        a = e[0].get<std::string>();  // ["a", "b"] (transformers 5)
        b = e[1].get<std::string>();
      } else {
        fail(path, " is neither \"a b\" nor [\"a\", \"b\"]; fix the file");
      }
      const int32_t left = model_token(a, path);
      const int32_t right = model_token(b, path);
      const int32_t merged = model_token(a + b, path + " merged");
      const uint64_t key = (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
      t.merges_[key] = {static_cast<int32_t>(i), merged};  // a repeated pair: the last wins
    }
  }

  void parse_normalizer(const json& n, const std::string& path) {
    const std::string type = type_of(n, path);
    if (type == "NFC") {
      only_keys(n, path, {"type"});
      t.nfc_ = true;
    } else if (type == "Sequence") {
      only_keys(n, path, {"type", "normalizers"});
      const json* list = find(n, "normalizers");
      if (!list || !list->is_array()) fail(path, ".normalizers is not an array; fix the file");
      for (size_t i = 0; i < list->size(); ++i)
        parse_normalizer((*list)[i], path + ".normalizers[" + std::to_string(i) + "]");
    } else {
      fail(path, ".type ", in_quotes(type),
           " is not supported (Solo normalizes with NFC or not at all); Solo cannot read this "
           "tokenizer");
    }
  }

  void parse_byte_level(const json& b, const std::string& path) {
    only_keys(b, path, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    t.add_prefix_space_ = get_bool(b, "add_prefix_space", path, true);
    if (get_bool(b, "use_regex", path, true)) {
      t.byte_level_regex_.emplace(
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", false,
          "tokenizer: " + name + ": " + path);
    }
  }

  void parse_split(const json& s, const std::string& path) {
    only_keys(s, path, {"type", "pattern", "behavior", "invert"});
    const json* p = find(s, "pattern");
    if (!p || !p->is_object() || p->size() != 1)
      fail(path, ".pattern is not {\"Regex\": ...} or {\"String\": ...}; fix the file");
    const bool regex = p->contains("Regex");
    if (!regex && !p->contains("String"))
      fail(path, ".pattern is not {\"Regex\": ...} or {\"String\": ...}; fix the file");
    const std::string pattern = get_string(*p, regex ? "Regex" : "String", path + ".pattern");
    const std::string behavior = get_string(s, "behavior", path);
    if (behavior != "Isolated")
      fail(path, ".behavior ", in_quotes(behavior),
           " is not supported (Solo splits with Isolated); Solo cannot read this tokenizer");
    if (get_bool(s, "invert", path, false))
      fail(path, ".invert true is not supported; Solo cannot read this tokenizer");
    t.splits_.emplace_back(pattern, !regex, "tokenizer: " + name + ": " + path + ".pattern");
  }

  void parse_pre_tokenizer(const json& p) {
    const std::string type = type_of(p, "pre_tokenizer");
    if (type == "ByteLevel") return parse_byte_level(p, "pre_tokenizer");
    if (type != "Sequence")
      fail("pre_tokenizer.type ", in_quotes(type),
           " is not supported (Solo reads ByteLevel, or a Sequence of Split then ByteLevel); Solo "
           "cannot read this tokenizer");
    only_keys(p, "pre_tokenizer", {"type", "pretokenizers"});
    const json* list = find(p, "pretokenizers");
    if (!list || !list->is_array() || list->empty())
      fail("pre_tokenizer.pretokenizers is not a non-empty array; fix the file");
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string path = "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]";
      const std::string ptype = type_of((*list)[i], path);
      const bool last = i + 1 == list->size();
      if (ptype == "Split" && !last) {
        parse_split((*list)[i], path);
      } else if (ptype == "ByteLevel" && last) {
        parse_byte_level((*list)[i], path);
      } else {
        fail(path, ".type ", in_quotes(ptype),
             ptype == "Split" || ptype == "ByteLevel" ? " is not supported in this position"
                                                      : " is not supported",
             " (Solo reads a Sequence of Split pre-tokenizers ending in one ByteLevel); Solo "
             "cannot read this tokenizer");
      }
    }
  }

  // The id of the one special token of a template (before or after $A), or -1.
  int32_t template_token(const json& tp, const std::vector<std::string>& names,
                         const std::string& path) const {
    if (names.size() != 1) return -1;
    const json* specials = find(tp, "special_tokens");
    if (!specials || !specials->is_object() || !specials->contains(names[0]))
      fail(path, ".special_tokens has no entry for ", in_quotes(names[0]), "; fix the file");
    const json& entry = (*specials)[names[0]];
    object(entry, path + ".special_tokens[" + in_quotes(names[0]) + "]");
    const json* ids = find(entry, "ids");
    if (!ids || !ids->is_array() || ids->size() != 1) return -1;
    const int32_t id = get_id((*ids)[0], path + ".special_tokens[" + in_quotes(names[0]) + "].ids");
    if (static_cast<size_t>(id) >= t.pieces_.size() || !t.has_piece_[static_cast<size_t>(id)])
      fail(path, ".special_tokens[", in_quotes(names[0]), "] has id ", id,
           ", which no token has; fix the file");
    return id;
  }

  void parse_post_processor(const json& pp, const std::string& path) {
    const std::string type = type_of(pp, path);
    if (type == "ByteLevel") {
      only_keys(pp, path, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    } else if (type == "Sequence") {
      only_keys(pp, path, {"type", "processors"});
      const json* list = find(pp, "processors");
      if (!list || !list->is_array()) fail(path, ".processors is not an array; fix the file");
      for (size_t i = 0; i < list->size(); ++i)
        parse_post_processor((*list)[i], path + ".processors[" + std::to_string(i) + "]");
    } else if (type == "TemplateProcessing") {
      only_keys(pp, path, {"type", "single", "pair", "special_tokens"});
      const json* single = find(pp, "single");
      if (!single || !single->is_array()) fail(path, ".single is not an array; fix the file");
      std::vector<std::string> before, after;
      bool seen_sequence = false;
      for (const json& item : *single) {
        if (item.is_object() && item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.is_object() && item.contains("SpecialToken")) {
          const json& st = item["SpecialToken"];
          object(st, path + ".single[].SpecialToken");
          (seen_sequence ? after : before).push_back(get_string(st, "id", path + ".single[]"));
        } else {
          fail(path, ".single has an item that is neither SpecialToken nor Sequence; fix the file");
        }
      }
      if (!seen_sequence) fail(path, ".single has no $A; fix the file");
      if (int32_t id = template_token(pp, before, path); id >= 0) template_bos = id;
      if (int32_t id = template_token(pp, after, path); id >= 0) template_eos = id;
    } else {
      fail(path, ".type ", in_quotes(type),
           " is not supported (Solo reads TemplateProcessing, ByteLevel and Sequence); Solo "
           "cannot read this tokenizer");
    }
  }

  // A token of tokenizer_config.json: null, "text" or {"content": "text", ...}.
  int32_t config_token(const json& config, const char* key, int32_t fallback) const {
    auto it = config.find(key);
    if (it == config.end()) return fallback;
    if (it->is_null()) return -1;
    std::string content;
    if (it->is_string()) {
      content = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      content = (*it)["content"].get<std::string>();
    } else {
      SOLO_FAIL("tokenizer: ", config_name, ": ", key,
                " is neither a string nor {\"content\": ...}; fix the file");
    }
    if (auto a = added.find(content); a != added.end()) return a->second;
    if (auto v = vocab.find(content); v != vocab.end()) return v->second;
    SOLO_FAIL("tokenizer: ", config_name, ": ", key, " ", in_quotes(content), " is not a token of ",
              name, "; fix ", key, " or the tokenizer");
  }

  void parse_config(std::string_view text) {
    const json config = parse_json(text, config_name);
    if (!config.is_object())
      SOLO_FAIL("tokenizer: ", config_name, " is not a JSON object; fix or remove the file");
    t.bos_ = config_token(config, "bos_token", t.bos_);
    t.eos_ = config_token(config, "eos_token", t.eos_);
    t.pad_ = config_token(config, "pad_token", t.pad_);
    if (t.model_unk_ < 0) t.unk_ = config_token(config, "unk_token", t.unk_);
  }
};

std::unique_ptr<BpeTokenizer> BpeTokenizer::parse(std::string_view json_text,
                                                  std::string_view config_json,
                                                  const std::string& name) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer);
  t->name_ = name;
  Parser p{*t, name, (fs::path(name).parent_path() / "tokenizer_config.json").string(), {}, {}};
  try {
    p.run(json_text, config_json);
  } catch (const json::exception& e) {  // a wrong type the checks above let through
    SOLO_FAIL("tokenizer: ", name, ": ", printable(e.what()), "; fix the file");
  }
  return t;
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::load(const std::string& file) {
  const std::string text = read_file(file);
  const fs::path config = fs::path(file).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  const std::string config_text = fs::is_regular_file(config, ec) ? read_file(config) : "";
  return parse(text, config_text, file);
}

template <class F>
void BpeTokenizer::split_added(std::string_view text, const AddedIndex& index,
                               std::vector<int32_t>& ids, const F& on_text) const {
  size_t last = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    for (const AddedToken& a : index[static_cast<uint8_t>(text[i])]) {
      if (text.substr(i).starts_with(a.content)) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > last) on_text(text.substr(last, i - last));
    ids.push_back(hit->id);
    i += hit->content.size();
    last = i;
  }
  if (last < text.size()) on_text(text.substr(last));
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  const size_t bad = utf8_invalid_offset(text);
  SOLO_CHECK(bad == std::string_view::npos, "tokenizer: ", name_,
             ": the text to encode is not valid UTF-8 (at byte ", bad,
             "); decode the input as UTF-8 first");
  std::vector<int32_t> ids;
  const auto after_raw = [&](std::string_view piece) {
    const auto encode_piece = [&](std::string_view p) { encode_normalized(p, ids); };
    if (nfc_) {
      const std::string normalized = nfc(piece);
      split_added(normalized, added_normalized_, ids, encode_piece);
    } else {
      split_added(piece, added_normalized_, ids, encode_piece);
    }
  };
  split_added(text, added_raw_, ids, after_raw);
  return ids;
}

void BpeTokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& ids) const {
  // Split pre-tokenizers, Isolated: every match and every gap between matches is a piece.
  std::vector<std::string_view> pieces{text}, next;
  for (const Regex& re : splits_) {
    next.clear();
    for (std::string_view p : pieces) {
      size_t last = 0;
      for (auto [begin, end] : re.find_all(p)) {
        if (begin > last) next.push_back(p.substr(last, begin - last));
        next.push_back(p.substr(begin, end - begin));
        last = end;
      }
      if (last < p.size()) next.push_back(p.substr(last));
    }
    std::swap(pieces, next);
  }
  // ByteLevel: a space before each piece that has none, GPT-2's regex, then BPE.
  std::string spaced;
  for (std::string_view p : pieces) {
    if (add_prefix_space_ && p.front() != ' ') {
      spaced.assign(1, ' ');
      spaced.append(p);
      p = spaced;
    }
    if (!byte_level_regex_) {
      bpe(p, ids);
      continue;
    }
    size_t last = 0;
    for (auto [begin, end] : byte_level_regex_->find_all(p)) {
      if (begin > last) bpe(p.substr(last, begin - last), ids);
      bpe(p.substr(begin, end - begin), ids);
      last = end;
    }
    if (last < p.size()) bpe(p.substr(last), ids);
  }
}

void BpeTokenizer::bpe(std::string_view word, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    if (auto it = byte_vocab_.find(word); it != byte_vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1: none
    bool alive;
  };
  std::vector<Symbol> s;
  s.reserve(word.size());
  bool pending_unk = false;  // the last symbol stands for unknown characters (fuse_unk)
  for (char c : word) {
    int32_t id = byte_id_[static_cast<uint8_t>(c)];
    if (id < 0) {
      if (model_unk_ < 0) continue;  // no unk_token: the character is dropped
      if (fuse_unk_ && pending_unk) continue;
      id = model_unk_;
      pending_unk = true;
    } else {
      pending_unk = false;
    }
    const auto n = static_cast<int32_t>(s.size());
    s.push_back({id, n - 1, -1, true});
    if (n > 0) s[static_cast<size_t>(n - 1)].next = n;
  }
  const auto find_merge = [&](int32_t left, int32_t right) -> const Merge* {
    auto it = merges_.find((static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right));
    return it == merges_.end() ? nullptr : &it->second;
  };
  // Lowest rank first, then leftmost; stale entries are skipped when popped.
  struct Candidate {
    int32_t rank, pos, id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  if (s.size() > 1) {
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    for (size_t i = 0; i + 1 < s.size(); ++i)
      if (const Merge* m = find_merge(s[i].id, s[i + 1].id))
        queue.push({m->rank, static_cast<int32_t>(i), m->id});
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = s[static_cast<size_t>(top.pos)];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = s[static_cast<size_t>(left.next)];
      const Merge* m = find_merge(left.id, right.id);
      if (!m || m->id != top.id) continue;
      left.id = top.id;
      right.alive = false;
      left.next = right.next;
      if (left.next >= 0) s[static_cast<size_t>(left.next)].prev = top.pos;
      if (left.prev >= 0) {
        if (const Merge* pm = find_merge(s[static_cast<size_t>(left.prev)].id, left.id))
          queue.push({pm->rank, left.prev, pm->id});
      }
      if (left.next >= 0) {
        if (const Merge* nm = find_merge(left.id, s[static_cast<size_t>(left.next)].id))
          queue.push({nm->rank, top.pos, nm->id});
      }
    }
  }
  for (const Symbol& sym : s)
    if (sym.alive) ids.push_back(sym.id);
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    SOLO_CHECK(has_piece_[static_cast<size_t>(id)], "tokenizer: ", name_, ": decode got id ", id,
               ", which no token of the vocabulary has");
    bytes += decoded_[static_cast<size_t>(id)];
  }
  return utf8_lossy(bytes);
}

std::string BpeTokenizer::id_to_piece(int32_t id) const {
  SOLO_CHECK(has_piece_[static_cast<size_t>(id)], "tokenizer: ", name_, ": id ", id,
             " has no token (the vocabulary has a gap there)");
  return pieces_[static_cast<size_t>(id)];
}

}  // namespace solo::data
