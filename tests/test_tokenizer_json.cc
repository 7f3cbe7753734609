// tokenizer.json (byte-level BPE) against Hugging Face `tokenizers`: the ids of 10,000 varied
// lines from tests/reference/make_tokenizer_json.py, decoding, special tokens, BOS/EOS, the
// directory form of Tokenizer::load, and refusals of what Solo does not read.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "solo/core/error.h"
#include "solo/core/printable.h"
#include "solo/data/bpe_tokenizer.h"
#include "solo/data/tokenizer.h"
#include "test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;
using solo::data::Tokenizer;

namespace {

const fs::path kGolden = fs::path(SOLO_SOURCE_DIR) / "tests" / "golden";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << p;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The corpus escapes: \\ \n \r \xHH.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    if (c == 'n') {
      out += '\n';
    } else if (c == 'r') {
      out += '\r';
    } else if (c == 'x' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> out;
    for (const auto& l : split_lines(read_text(kGolden / "tokenizer_corpus.txt")))
      out.push_back(unescape(l));
    return out;
  }();
  return lines;
}

std::vector<std::vector<int32_t>> expected_ids(const std::string& name) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& l :
       split_lines(read_text(kGolden / ("tokenizer_" + name) / "expected_ids.txt"))) {
    std::vector<int32_t> ids;
    std::istringstream in(l);
    for (int32_t id; in >> id;) ids.push_back(id);
    out.push_back(ids);
  }
  return out;
}

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  s += ']';
  return s;
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("solo_test_tokenizer_json_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Encodes every corpus line and compares with tokenizers' ids; checks decoding too.
void check_against_reference(const std::string& name, bool check_decode) {
  const Tokenizer tok = Tokenizer::load((kGolden / ("tokenizer_" + name)).string());
  EXPECT_EQ(fs::path(tok.path()).filename(), "tokenizer.json");
  const auto expected = expected_ids(name);
  ASSERT_GE(expected.size(), 3000u);
  ASSERT_LE(expected.size(), corpus().size());
  std::map<size_t, std::string> decoded_diff;
  if (check_decode) {
    for (const auto& l :
         split_lines(read_text(kGolden / ("tokenizer_" + name) / "decoded_diff.txt"))) {
      const size_t tab = l.find('\t');
      decoded_diff[std::stoul(l.substr(0, tab)) - 1] = unescape(l.substr(tab + 1));
    }
  }
  std::vector<std::vector<int32_t>> got(expected.size());
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < expected.size(); ++i) got[i] = tok.encode(corpus()[i]);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  size_t tokens = 0, bytes = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    tokens += got[i].size();
    bytes += corpus()[i].size();
  }
  std::printf("[ tokenizer ] %s: %zu lines, %zu bytes, %zu tokens encoded in %.3f s\n",
              name.c_str(), expected.size(), bytes, tokens, seconds);
  EXPECT_LT(seconds, 20.0);  // well under a second in a release build; sanitizers are slower
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(got[i], expected[i])
        << name << ": first mismatch at corpus line " << i + 1 << " \""
        << solo::printable(corpus()[i]) << "\"\n  tokenizers: " << ids_text(expected[i])
        << "\n  solo:       " << ids_text(got[i]);
  }
  if (!check_decode) return;
  for (size_t i = 0; i < expected.size(); ++i) {
    auto it = decoded_diff.find(i);
    const std::string& want = it == decoded_diff.end() ? corpus()[i] : it->second;
    ASSERT_EQ(tok.decode(got[i]), want) << name << ": corpus line " << i + 1;
  }
}

int32_t single_id(const Tokenizer& tok, const std::string& text) {
  auto ids = tok.encode(text);
  EXPECT_EQ(ids.size(), 1u) << text;
  return ids.empty() ? -1 : ids[0];
}

// A copy of a golden tokenizer.json, edited by `edit` and written into its own directory.
fs::path edited(const std::string& name, const std::string& tag,
                const std::function<void(json&)>& edit) {
  json j = json::parse(read_text(kGolden / ("tokenizer_" + name) / "tokenizer.json"));
  edit(j);
  fs::path d = temp_dir(tag);
  write_text(d / "tokenizer.json", j.dump());
  return d / "tokenizer.json";
}

}  // namespace

TEST(TokenizerJson, Llama3MatchesTokenizers) {
  check_against_reference("llama3", true);
}
TEST(TokenizerJson, Qwen2MatchesTokenizers) {
  check_against_reference("qwen2", true);  // NFC, "a b" merges, a non-special added token
}
TEST(TokenizerJson, Gpt2MatchesTokenizers) {
  check_against_reference("gpt2", false);  // ByteLevel with add_prefix_space and GPT-2's regex
}

TEST(TokenizerJson, Llama3SpecialTokensAndBos) {
  const Tokenizer tok = Tokenizer::load((kGolden / "tokenizer_llama3" / "tokenizer.json").string());
  EXPECT_EQ(tok.vocab_size(), 3011);
  const int32_t bot = single_id(tok, "<|begin_of_text|>");
  const int32_t eot = single_id(tok, "<|eot_id|>");
  const int32_t header = single_id(tok, "<|start_header_id|>");
  const int32_t header_end = single_id(tok, "<|end_header_id|>");
  EXPECT_EQ(bot, 3000);
  EXPECT_EQ(tok.bos_id(), bot);  // tokenizer_config.json
  EXPECT_EQ(tok.eos_id(), eot);
  EXPECT_EQ(tok.pad_id(), -1);
  EXPECT_EQ(tok.unk_id(), -1);
  EXPECT_EQ(tok.id_to_piece(bot), "<|begin_of_text|>");
  const std::string chat = "<|start_header_id|>assistant<|end_header_id|>\n\nHi!<|eot_id|>";
  auto ids = tok.encode(chat);
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids.front(), header);
  EXPECT_EQ(ids.back(), eot);
  EXPECT_NE(std::find(ids.begin(), ids.end(), header_end), ids.end());
  EXPECT_EQ(tok.decode(ids), chat);
  // Longest first: the marker wins over a prefix of itself.
  auto partial = tok.encode("<|eot_id");
  EXPECT_EQ(std::find(partial.begin(), partial.end(), eot), partial.end());
  auto with_bos = tok.encode("Hello", /*add_bos=*/true, /*add_eos=*/true);
  EXPECT_EQ(with_bos.front(), bot);
  EXPECT_EQ(with_bos.back(), eot);
  EXPECT_EQ(tok.decode(with_bos), "<|begin_of_text|>Hello<|eot_id|>");
  EXPECT_EQ(tok.id_to_piece(tok.encode(" the")[0]).substr(0, 2), "\xC4\xA0");  // 'Ġ'
}

TEST(TokenizerJson, BosFromTemplateWithoutConfig) {
  fs::path d = temp_dir("noconfig");
  fs::copy_file(kGolden / "tokenizer_llama3" / "tokenizer.json", d / "tokenizer.json");
  const Tokenizer tok = Tokenizer::load(d.string());
  EXPECT_EQ(tok.bos_id(), 3000);  // TemplateProcessing's "<|begin_of_text|> $A"
  EXPECT_EQ(tok.eos_id(), -1);
  EXPECT_NE(solo::test::error_of([&] { tok.encode("x", false, true); }).find("no EOS"),
            std::string::npos);
  fs::remove_all(d);
}

TEST(TokenizerJson, Qwen2SpecialTokensAndNfc) {
  const Tokenizer tok = Tokenizer::load((kGolden / "tokenizer_qwen2").string());
  const int32_t start = single_id(tok, "<|im_start|>");
  const int32_t end = single_id(tok, "<|im_end|>");
  EXPECT_EQ(single_id(tok, "<|endoftext|>"), 0);  // in the model vocabulary
  EXPECT_EQ(tok.bos_id(), -1);                    // bos_token: null
  EXPECT_EQ(tok.eos_id(), end);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_NE(single_id(tok, "<think>"), -1);  // a non-special added token also splits
  auto ids = tok.encode("<|im_start|>user\nHi<|im_end|>");
  EXPECT_EQ(ids.front(), start);
  EXPECT_EQ(ids.back(), end);
  EXPECT_NE(solo::test::error_of([&] { tok.encode("x", true); }).find("no BOS"), std::string::npos);
  // NFC: decomposed and composed forms give the same ids.
  EXPECT_EQ(tok.encode("cafe\xCC\x81"), tok.encode("caf\xC3\xA9"));
  EXPECT_EQ(tok.decode(tok.encode("cafe\xCC\x81")), "caf\xC3\xA9");
  EXPECT_EQ(tok.decode(tok.encode("\xE2\x84\xAB")), "\xC3\x85");  // U+212B ANGSTROM -> U+00C5
  EXPECT_EQ(tok.decode(tok.encode("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8")),
            "\xEA\xB0\x81");  // conjoining jamo -> one Hangul syllable
}

TEST(TokenizerJson, IgnoreMerges) {
  // vocab: the byte alphabet plus ab, bc, abc; merges "b c" before "a b": BPE of "abc" stops
  // at [a, bc], while ignore_merges takes "abc" whole (ids from tokenizers 0.23.3).
  const auto dir = temp_dir("ignore_merges");
  json j = json::parse(read_text(kGolden / "tokenizer_gpt2" / "tokenizer.json"));
  // The golden GPT-2 file's alphabet (its first 257 ids) is reused; three pieces are added.
  json v = json::object();
  int32_t next = 0;
  for (const auto& [piece, id] : j["model"]["vocab"].items())
    if (id.get<int32_t>() <= 256) v[piece] = id, next = std::max(next, id.get<int32_t>() + 1);
  for (const char* piece : {"ab", "bc", "abc"})
    if (!v.contains(piece)) v[piece] = next++;
  j["model"]["vocab"] = v;
  j["model"]["merges"] = {"b c", "a b", "ab c"};
  j["pre_tokenizer"]["add_prefix_space"] = false;
  j["added_tokens"] = json::array();
  for (bool ignore : {false, true}) {
    j["model"]["ignore_merges"] = ignore;
    write_text(dir / "tokenizer.json", j.dump());
    const Tokenizer tok = Tokenizer::load(dir.string());
    const int32_t a = v["a"], bc = v["bc"], abc = v["abc"], space = v["\xC4\xA0"];
    EXPECT_EQ(tok.encode("abcabc"), (std::vector<int32_t>{a, bc, a, bc})) << ignore;
    if (ignore)
      EXPECT_EQ(tok.encode("abc abc"), (std::vector<int32_t>{abc, space, a, bc}));
    else
      EXPECT_EQ(tok.encode("abc abc"), (std::vector<int32_t>{a, bc, space, a, bc}));
  }
  fs::remove_all(dir);
}

TEST(TokenizerJson, BothMergeSpellingsGiveTheSameIds) {
  // The golden llama3 file has ["a", "b"] pairs; rewrite them as "a b" strings.
  const fs::path file = edited("llama3", "legacy_merges", [](json& j) {
    json merges = json::array();
    for (const auto& m : j["model"]["merges"])
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    j["model"]["merges"] = merges;
  });
  const Tokenizer legacy = Tokenizer::load(file.string());
  const Tokenizer pairs = Tokenizer::load((kGolden / "tokenizer_llama3").string());
  for (size_t i = 0; i < 500; ++i) EXPECT_EQ(legacy.encode(corpus()[i]), pairs.encode(corpus()[i]));
  fs::remove_all(file.parent_path());
}

TEST(TokenizerJson, DirectoryPrefersTokenizerJson) {
  fs::path d = temp_dir("both");
  fs::copy_file(kGolden / "tokenizer_qwen2" / "tokenizer.json", d / "tokenizer.json");
  fs::copy_file(kGolden / "tokenizer_qwen2" / "tokenizer_config.json", d / "tokenizer_config.json");
  write_text(d / "tokenizer.model", "not read");
  const Tokenizer tok = Tokenizer::load(d.string());
  EXPECT_EQ(tok.path(), (d / "tokenizer.json").string());
  EXPECT_EQ(tok.vocab_size(), 3004);
  fs::remove(d / "tokenizer.json");
  // Without tokenizer.json the directory's tokenizer.model is read (here: not a model).
  EXPECT_NE(solo::test::error_of([&] { Tokenizer::load(d.string()); }).find("SentencePiece"),
            std::string::npos);
  fs::remove(d / "tokenizer.model");
  std::string msg = solo::test::error_of([&] { Tokenizer::load(d.string()); });
  EXPECT_NE(msg.find("has no tokenizer.json or tokenizer.model"), std::string::npos) << msg;
  fs::remove_all(d);
}

TEST(TokenizerJson, DecodeReplacesBrokenUtf8) {
  const Tokenizer tok = Tokenizer::load((kGolden / "tokenizer_llama3").string());
  // "€" is E2 82 AC; the piece for the lone byte E2 is "â" (U+00E2) in the byte alphabet.
  int32_t lone = -1;
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    if (tok.id_to_piece(id) == "\xC3\xA2") lone = id;
  ASSERT_GE(lone, 0);
  EXPECT_EQ(tok.decode({lone}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode(tok.encode("\xE2\x82\xAC")), "\xE2\x82\xAC");
  std::string msg = solo::test::error_of([&] { tok.encode("ok \xFF bad"); });
  EXPECT_NE(msg.find("not valid UTF-8 (at byte 3)"), std::string::npos) << msg;
  EXPECT_NE(
      solo::test::error_of([&] { tok.decode({tok.vocab_size()}); }).find("outside the vocabulary"),
      std::string::npos);
}

TEST(TokenizerJson, RefusesWhatItDoesNotRead) {
  struct Case {
    const char* tag;
    std::function<void(json&)> edit;
    std::vector<std::string> expected;  // substrings of the error
  };
  const std::vector<Case> cases = {
      {"unigram", [](json& j) { j["model"]["type"] = "Unigram"; }, {"model.type", "\"Unigram\""}},
      {"nfkc",
       [](json& j) {
         j["normalizer"] = {{"type", "NFKC"}};
       },
       {"normalizer.type", "\"NFKC\""}},
      {"lowercase_in_sequence",
       [](json& j) {
         j["normalizer"] = {{"type", "Sequence"},
                            {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
       },
       {"normalizer.normalizers[1].type", "\"Lowercase\""}},
      {"whitespace",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Whitespace"}};
       },
       {"pre_tokenizer.type", "\"Whitespace\""}},
      {"digits",
       [](json& j) {
         j["pre_tokenizer"]["pretokenizers"].insert(
             j["pre_tokenizer"]["pretokenizers"].begin(),
             json{{"type", "Digits"}, {"individual_digits", true}});
       },
       {"pre_tokenizer.pretokenizers[0].type", "\"Digits\""}},
      {"removed",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
       {"pre_tokenizer.pretokenizers[0].behavior", "\"Removed\""}},
      {"invert",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; },
       {"pre_tokenizer.pretokenizers[0].invert"}},
      {"bad_regex",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(\\p{L}"; },
       {"pre_tokenizer.pretokenizers[0].pattern", "does not compile"}},
      {"no_pre_tokenizer",
       [](json& j) { j["pre_tokenizer"] = nullptr; },
       {"pre_tokenizer is null"}},
      {"unknown_merge",
       [](json& j) {
         j["model"]["merges"].push_back({"\xC4\xA0", "zzzunknown"});
       },
       {"model.merges[2744]", "\"zzzunknown\"", "not in model.vocab"}},
      {"merge_result_unknown",
       [](json& j) {
         j["model"]["merges"].push_back({"z", "q"});
       },
       {"model.merges[2744] merged", "\"zq\""}},
      {"byte_fallback",
       [](json& j) { j["model"]["byte_fallback"] = true; },
       {"model.byte_fallback"}},
      {"dropout", [](json& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout"}},
      {"unknown_model_field",
       [](json& j) { j["model"]["sparkle"] = 1; },
       {"model.sparkle", "not a field Solo knows"}},
      {"lstrip",
       [](json& j) { j["added_tokens"][0]["lstrip"] = true; },
       {"added_tokens[0]", "\"<|begin_of_text|>\"", "lstrip"}},
      {"wordpiece_decoder",
       [](json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       {"decoder.type", "\"WordPiece\""}},
      {"bert_post_processor",
       [](json& j) {
         j["post_processor"] = {{"type", "BertProcessing"}};
       },
       {"post_processor.type", "\"BertProcessing\""}},
      {"control_characters",
       [](json& j) { j["model"]["type"] = "Uni\ngram\x1b[31m"; },
       {"\"Uni\\ngram\\x1b[31m\""}},
      {"vocab_id_too_large",
       [](json& j) { j["model"]["vocab"]["zzz"] = 1u << 30; },
       {"model.vocab[\"zzz\"]", "not an id"}},
  };
  for (const Case& c : cases) {
    const fs::path file = edited("llama3", c.tag, c.edit);
    const std::string msg = solo::test::error_of([&] { Tokenizer::load(file.string()); });
    EXPECT_NE(msg.find(file.string()), std::string::npos) << c.tag << ": " << msg;
    for (const auto& e : c.expected)
      EXPECT_NE(msg.find(e), std::string::npos) << c.tag << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.tag << ": " << msg;
    fs::remove_all(file.parent_path());
  }
}

TEST(TokenizerJson, BadFilesAreOneLineErrors) {
  fs::path d = temp_dir("bad");
  for (const std::string& text : {std::string("not json \x01\n"), std::string("[1, 2]"),
                                  std::string("{\"model\": {\"type\": \"BPE\"}}"), std::string()}) {
    write_text(d / "tokenizer.json", text);
    const std::string msg = solo::test::error_of([&] { Tokenizer::load(d.string()); });
    EXPECT_NE(msg.find((d / "tokenizer.json").string()), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // A tokenizer_config.json naming a token the tokenizer does not have.
  fs::copy_file(kGolden / "tokenizer_llama3" / "tokenizer.json", d / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  write_text(d / "tokenizer_config.json", R"({"bos_token": {"content": "<s>"}})");
  std::string msg = solo::test::error_of([&] { Tokenizer::load(d.string()); });
  EXPECT_NE(msg.find("tokenizer_config.json: bos_token \"<s>\" is not a token"), std::string::npos)
      << msg;
  fs::remove_all(d);
}
