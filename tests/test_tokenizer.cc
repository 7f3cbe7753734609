// Tokenizer training, loading, encoding and errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "solo/core/error.h"
#include "solo/data/corpus.h"
#include "solo/data/tokenizer.h"
#include "temp_files.h"

namespace fs = std::filesystem;
using solo::data::Tokenizer;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("solo_test_tokenizer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A small English-ish corpus with repetition so BPE has merges to learn.
std::vector<std::string> corpus() {
  std::vector<std::string> words = {"the",  "quick", "brown", "fox",    "jumps", "over",
                                    "lazy", "dog",   "and",   "then",   "runs",  "away",
                                    "into", "the",   "green", "forest", "where", "birds",
                                    "sing", "songs", "of",    "spring", "rain"};
  std::vector<std::string> docs;
  for (int d = 0; d < 60; ++d) {
    std::string doc;
    for (int line = 0; line < 3; ++line) {
      if (line) doc += '\n';
      for (int w = 0; w < 9; ++w) {
        if (w) doc += ' ';
        doc += words[static_cast<size_t>((d * 7 + line * 5 + w * 3) % words.size())];
      }
      doc += ' ';
      doc += std::to_string(d * 13 + line);
      doc += '.';
    }
    docs.push_back(doc);
  }
  return docs;
}

std::string expect_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const solo::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected solo::Error";
  return "";
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(temp_dir("suite"));
    solo::data::train_tokenizer(corpus(), (*dir_ / "tok").string(), 320);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static fs::path* dir_;
};
fs::path* TokenizerTest::dir_ = nullptr;

}  // namespace

TEST_F(TokenizerTest, WritesModelAndVocab) {
  EXPECT_TRUE(fs::exists(*dir_ / "tok.model"));
  EXPECT_TRUE(fs::exists(*dir_ / "tok.vocab"));
  EXPECT_TRUE(solo::test::temp_files_beside(*dir_ / "tok.model").empty());
  auto tok = Tokenizer::load((*dir_ / "tok.model").string());
  EXPECT_EQ(tok.vocab_size(), 320);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), -1);
  EXPECT_EQ(tok.id_to_piece(1), "<s>");
}

TEST_F(TokenizerTest, RoundTripsAscii) {
  auto tok = Tokenizer::load((*dir_ / "tok.model").string());
  for (std::string text :
       {"the quick brown fox", "Hello, World! 12345 ~{}|\\",
        "  two leading spaces and\ttabs\nand a newline\n", "zebra XYZ qqq", ""}) {
    auto ids = tok.encode(text);
    EXPECT_EQ(tok.decode(ids), text) << text;
  }
  // Seen words compress below one token per byte; unseen bytes still encode (byte fallback).
  EXPECT_LT(tok.encode("the quick brown fox").size(), std::string("the quick brown fox").size());
  auto ids = tok.encode("~", /*add_bos=*/true, /*add_eos=*/true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok.decode(ids), "~");
}

TEST_F(TokenizerTest, DirectoryWithTokenizerModelLoads) {
  fs::path d = temp_dir("hfdir");
  fs::copy_file(*dir_ / "tok.model", d / "tokenizer.model");
  auto tok = Tokenizer::load(d.string());
  EXPECT_EQ(tok.vocab_size(), 320);
  fs::remove_all(d);
}

TEST_F(TokenizerTest, TrainingIsDeterministic) {
  fs::path d = temp_dir("determinism");
  solo::data::train_tokenizer(corpus(), (d / "again").string(), 320);
  EXPECT_EQ(read_bytes(d / "again.model"), read_bytes(*dir_ / "tok.model"));
  EXPECT_EQ(read_bytes(d / "again.vocab"), read_bytes(*dir_ / "tok.vocab"));
  fs::remove_all(d);
}

TEST(Tokenizer, TrainsFromCorpusFile) {
  fs::path d = temp_dir("file");
  {
    std::ofstream out(d / "corpus.txt");
    for (const auto& doc : corpus()) out << doc << "\n\n";
  }
  solo::data::train_tokenizer((d / "corpus.txt").string(), (d / "m").string(), 300);
  auto tok = Tokenizer::load((d / "m.model").string());
  EXPECT_EQ(tok.vocab_size(), 300);
  EXPECT_EQ(tok.decode(tok.encode("over the lazy dog")), "over the lazy dog");
  fs::remove_all(d);
}

TEST(Tokenizer, MissingPathErrorNamesPath) {
  std::string msg = expect_error([] { Tokenizer::load("/nonexistent/solo/tokenizer.model"); });
  EXPECT_NE(msg.find("/nonexistent/solo/tokenizer.model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(Tokenizer, DirectoryWithoutModelErrors) {
  fs::path d = temp_dir("emptydir");
  std::string msg = expect_error([&] { Tokenizer::load(d.string()); });
  EXPECT_NE(msg.find(d.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.model"), std::string::npos) << msg;
  fs::remove_all(d);
}

TEST(Tokenizer, GarbageFileErrors) {
  fs::path d = temp_dir("garbage");
  fs::path p = d / "garbage.model";
  {
    std::ofstream out(p, std::ios::binary);
    out << "this is not a protobuf \x01\x02\xff\xfe at all";
  }
  std::string msg = expect_error([&] { Tokenizer::load(p.string()); });
  EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a valid SentencePiece model"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);  // empty file
  }
  msg = expect_error([&] { Tokenizer::load(p.string()); });
  EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  fs::remove_all(d);
}

TEST(Tokenizer, TrainingErrorsAreOneLine) {
  fs::path d = temp_dir("badtrain");
  std::string msg = expect_error(
      [&] { solo::data::train_tokenizer(std::vector<std::string>{"ab"}, (d / "m").string(), 5); });
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(d / "m.model"));
  fs::remove_all(d);
}

TEST(Corpus, SplitsParagraphsAndFortunes) {
  auto docs = solo::data::split_text_documents("\n\nfirst para\nline two\n\n\n  \nsecond\n");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0], "first para\nline two");
  EXPECT_EQ(docs[1], "second");
  // Fortune files: "%" lines separate entries; blank lines inside an entry are kept.
  docs = solo::data::split_text_documents("one\n\nstill one\n%\ntwo\r\n%\n%\nthree\n%\n");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0], "one\n\nstill one");
  EXPECT_EQ(docs[1], "two");
  EXPECT_EQ(docs[2], "three");
}

TEST(Corpus, DirectoryIsSortedAndSkipsIndexFiles) {
  fs::path d = temp_dir("corpusdir");
  std::ofstream(d / "b.txt") << "bee\n";
  std::ofstream(d / "a.txt") << "ay\n\nay2\n";
  std::ofstream(d / "a.dat") << "binary index";
  std::ofstream(d / "a.u8") << "link copy";
  auto docs = solo::data::read_documents(d.string());
  EXPECT_EQ(docs, (std::vector<std::string>{"ay", "ay2", "bee"}));
  fs::remove_all(d);
}

TEST(Corpus, ReadsJsonl) {
  fs::path d = temp_dir("jsonl");
  std::ofstream(d / "x.jsonl")
      << "{\"text\": \"hello\\nworld\", \"id\": 1}\n\n{\"text\": \"two\"}\n";
  auto docs = solo::data::read_documents((d / "x.jsonl").string(), solo::data::CorpusFormat::Jsonl);
  EXPECT_EQ(docs, (std::vector<std::string>{"hello\nworld", "two"}));
  std::string msg = expect_error([&] {
    solo::data::read_documents((d / "x.jsonl").string(), solo::data::CorpusFormat::Jsonl, "body");
  });
  EXPECT_NE(msg.find("x.jsonl:1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("body"), std::string::npos) << msg;
  std::ofstream(d / "x.jsonl") << "{not json\n";
  msg = expect_error([&] {
    solo::data::read_documents((d / "x.jsonl").string(), solo::data::CorpusFormat::Jsonl);
  });
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  fs::remove_all(d);
}
