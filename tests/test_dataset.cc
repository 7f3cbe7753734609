// Token files, block and document batching, sharding, and the prepare path.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "solo/core/error.h"
#include "solo/data/corpus.h"
#include "solo/data/dataloader.h"
#include "solo/data/prepare.h"
#include "solo/data/token_file.h"
#include "solo/data/tokenizer.h"
#include "temp_files.h"

namespace fs = std::filesystem;
using namespace solo::data;

namespace {

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() /
              ("solo_test_dataset_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string expect_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const solo::Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }
  ADD_FAILURE() << "expected solo::Error";
  return "";
}

// Tokens 0..n-1 (mod 1000, so they fit u16), in documents of the given lengths.
std::string write_iota(const TempDir& dir, const std::string& name, int64_t n,
                       std::vector<uint64_t> starts = {0}, TokenDType dtype = TokenDType::U16) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>(i % 1000);
  std::string path = dir.file(name);
  write_token_file(path, tokens, starts, dtype);
  return path;
}

void truncate_file(const std::string& path, uintmax_t size) {
  fs::resize_file(path, size);
}

}  // namespace

TEST(TokenFile, RoundTripU16AndI32) {
  TempDir dir("roundtrip");
  std::vector<int32_t> tokens = {5, 0, 65535, 7, 8, 9, 1, 2};
  std::vector<uint64_t> starts = {0, 3, 3, 6};  // includes an empty document
  for (auto dtype : {TokenDType::U16, TokenDType::I32}) {
    std::string path = dir.file("rt.tok");
    write_token_file(path, tokens, starts, dtype);
    EXPECT_TRUE(solo::test::temp_files_beside(path).empty());
    EXPECT_EQ(fs::file_size(path),
              32 + tokens.size() * token_dtype_size(dtype) + 8 * starts.size());
    TokenDataset ds(path);
    EXPECT_EQ(ds.dtype(), dtype);
    ASSERT_EQ(ds.num_tokens(), 8);
    ASSERT_EQ(ds.num_documents(), 4);
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(ds.token(i), tokens[static_cast<size_t>(i)]);
    EXPECT_EQ(ds.document(0), std::make_pair(int64_t{0}, int64_t{3}));
    EXPECT_EQ(ds.document(1), std::make_pair(int64_t{3}, int64_t{3}));
    EXPECT_EQ(ds.document(2), std::make_pair(int64_t{3}, int64_t{6}));
    EXPECT_EQ(ds.document(3), std::make_pair(int64_t{6}, int64_t{8}));
    std::vector<int64_t> lengths(4);
    ds.document_lengths(0, lengths);
    EXPECT_EQ(lengths, (std::vector<int64_t>{3, 0, 3, 2}));
    std::vector<int64_t> last(2);
    ds.document_lengths(2, last);
    EXPECT_EQ(last, (std::vector<int64_t>{3, 2}));
    EXPECT_THROW(ds.document_lengths(3, lengths), solo::Error);
    TokenDataset moved = std::move(ds);
    EXPECT_EQ(moved.token(2), 65535);
  }
  EXPECT_EQ(token_dtype_for_vocab(32000), TokenDType::U16);
  EXPECT_EQ(token_dtype_for_vocab(128256), TokenDType::I32);
}

TEST(TokenFile, LargeIdsInI32AndEmptyFile) {
  TempDir dir("i32");
  std::vector<int32_t> tokens = {128000, 70000, 3};
  std::vector<uint64_t> starts = {0};
  write_token_file(dir.file("big.tok"), tokens, starts, TokenDType::I32);
  TokenDataset ds(dir.file("big.tok"));
  EXPECT_EQ(ds.token(0), 128000);
  EXPECT_EQ(ds.token(1), 70000);
  write_token_file(dir.file("empty.tok"), {}, {}, TokenDType::U16);
  TokenDataset empty(dir.file("empty.tok"));
  EXPECT_EQ(empty.num_tokens(), 0);
  EXPECT_EQ(empty.num_documents(), 0);
  EXPECT_EQ(empty.num_blocks(4), 0);
}

TEST(TokenFile, IdTooLargeForU16LeavesNothing) {
  TempDir dir("overflow");
  std::string path = dir.file("x.tok");
  std::vector<int32_t> tokens = {1, 70000};
  std::vector<uint64_t> starts = {0};
  std::string msg = expect_error([&] { write_token_file(path, tokens, starts, TokenDType::U16); });
  EXPECT_NE(msg.find("70000"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(solo::test::temp_files_beside(path).empty());
}

TEST(TokenFile, UnfinishedWriterLeavesNothing) {
  TempDir dir("unfinished");
  std::string path = dir.file("x.tok");
  {
    TokenFileWriter w(path, TokenDType::U16);
    std::vector<int32_t> doc = {1, 2, 3};
    w.add_document(doc);
    EXPECT_EQ(solo::test::temp_files_beside(path).size(), 1u);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(solo::test::temp_files_beside(path).empty());
}

TEST(TokenFile, TruncatedFileErrorNamesFile) {
  TempDir dir("truncated");
  std::string path = write_iota(dir, "t.tok", 100);
  truncate_file(path, fs::file_size(path) - 3);
  std::string msg = expect_error([&] { TokenDataset ds(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  truncate_file(path, 10);  // shorter than the header
  msg = expect_error([&] { TokenDataset ds(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

// A token file truncated (or rewritten in place) under a running job is a clear error naming
// it, not a SIGBUS; one renamed over it leaves the job reading the file it opened.
TEST(TokenFile, TruncatedWhileTrainingIsAClearError) {
  TempDir dir("truncated_live");
  const std::string path = write_iota(dir, "live.tok", 1000, {0, 500});
  TokenDataset ds(path);
  BatchingOptions opt;
  opt.batch_size = 2;
  DataLoader dl(ds, 8, opt);
  Batch batch;
  ASSERT_TRUE(dl.next(batch));
  write_iota(dir, "other.tok", 10);
  fs::rename(dir.file("other.tok"), path);  // replaced by rename: the old file is still read
  ASSERT_TRUE(dl.next(batch));
  EXPECT_EQ(ds.token(999), 999 % 1000);
  EXPECT_EQ(ds.document(1), std::make_pair(int64_t{500}, int64_t{1000}));

  TokenDataset live(write_iota(dir, "live2.tok", 1000, {0, 500}));
  DataLoader dl2(live, 8, opt);
  ASSERT_TRUE(dl2.next(batch));
  truncate_file(live.path(), 100);
  std::string msg = expect_error([&] {
    while (dl2.next(batch)) {
    }
  });
  EXPECT_NE(msg.find(live.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find("was truncated or replaced while training"), std::string::npos) << msg;
  EXPECT_NE(msg.find("restore it and restart"), std::string::npos) << msg;
  msg = expect_error([&] { live.document(1); });
  EXPECT_NE(msg.find("was truncated"), std::string::npos) << msg;
  std::vector<int64_t> lengths(2);
  msg = expect_error([&] { live.document_lengths(0, lengths); });
  EXPECT_NE(msg.find("was truncated"), std::string::npos) << msg;
}

TEST(TokenFile, ExtraBytesAndBadHeaderFieldsError) {
  TempDir dir("extra");
  std::string path = write_iota(dir, "e.tok", 10);
  { std::ofstream(path, std::ios::app | std::ios::binary) << "junk"; }
  std::string msg = expect_error([&] { TokenDataset ds(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  // A huge token count must not overflow the size check.
  path = write_iota(dir, "h.tok", 10);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(16);
    uint64_t huge = ~uint64_t{0};
    f.write(reinterpret_cast<const char*>(&huge), 8);
  }
  msg = expect_error([&] { TokenDataset ds(path); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(TokenFile, WrongMagicOrMissingFileErrors) {
  TempDir dir("magic");
  std::string path = dir.file("foreign.bin");
  { std::ofstream(path, std::ios::binary) << std::string(64, 'x'); }
  std::string msg = expect_error([&] { TokenDataset ds(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a Solo token file"), std::string::npos) << msg;
  msg = expect_error([&] { TokenDataset ds(dir.file("missing.tok")); });
  EXPECT_NE(msg.find(dir.file("missing.tok")), std::string::npos) << msg;
}

TEST(TokenFile, BlocksAreContiguousWindows) {
  TempDir dir("blocks");
  TokenDataset ds(write_iota(dir, "b.tok", 23));
  EXPECT_EQ(ds.num_blocks(4), 5);   // (23 - 1) / 4
  EXPECT_EQ(ds.num_blocks(22), 1);  // exactly T + 1 tokens
  EXPECT_EQ(ds.num_blocks(23), 0);
  for (int64_t i = 0; i < 5; ++i) {
    auto b = ds.block(i, 4);
    ASSERT_EQ(b.size(), 5u);
    for (int64_t k = 0; k < 5; ++k) EXPECT_EQ(b[static_cast<size_t>(k)], i * 4 + k);
  }
  expect_error([&] { ds.block(5, 4); });
  expect_error([&] { ds.token(23); });
}

TEST(DataLoader, BatchesHaveShiftedLabels) {
  TempDir dir("dl");
  TokenDataset ds(write_iota(dir, "d.tok", 41));  // 10 blocks of T = 4
  BatchingOptions opt;
  opt.batch_size = 3;
  DataLoader dl(ds, 4, opt);
  EXPECT_EQ(dl.num_batches(), 3);
  Batch b = dl.batch(1);
  EXPECT_EQ(b.shape(), (solo::Shape{3, 4}));
  EXPECT_EQ(b.real_rows, 3);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t t = 0; t < 4; ++t) {
      size_t k = static_cast<size_t>(r * 4 + t);
      int64_t start = (3 + r) * 4;  // unshuffled: batch 1 holds blocks 3, 4, 5
      EXPECT_EQ(b.input_ids[k], start + t);
      EXPECT_EQ(b.labels[k], start + t);  // == input_ids: the model shifts
      EXPECT_EQ(b.attention_mask[k], 1);
    }
  }
}

TEST(DataLoader, ShuffleIsDeterministicAndPortable) {
  // Golden values: the permutation must not depend on the machine or standard library.
  auto p = shuffled_indices(10, 42, 0);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(10);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_EQ(p, shuffled_indices(10, 42, 0));
  EXPECT_NE(p, shuffled_indices(10, 42, 1));
  EXPECT_NE(p, shuffled_indices(10, 43, 0));
  EXPECT_EQ(p, (std::vector<int64_t>{4, 6, 7, 0, 9, 5, 1, 2, 3, 8}));  // also checked in Python
}

TEST(DataLoader, EpochVisitsEveryBlockOnce) {
  TempDir dir("epoch");
  TokenDataset ds(write_iota(dir, "e.tok", 8 * 37 + 1));  // 37 blocks of T = 8
  BatchingOptions opt;
  opt.batch_size = 4;
  opt.shuffle = true;
  opt.seed = 7;
  opt.drop_last = false;
  DataLoader a(ds, 8, opt), b(ds, 8, opt);
  EXPECT_EQ(a.num_batches(), 10);
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 2; ++e) {
    std::vector<int64_t> seen;
    Batch batch, other;
    int64_t n = 0;
    while (a.next(batch)) {
      ASSERT_TRUE(b.next(other));
      EXPECT_EQ(batch.input_ids, other.input_ids);  // same seed, same order
      for (int64_t r = 0; r < batch.rows; ++r) {
        if (batch.attention_mask[static_cast<size_t>(r * 8)] == 0) continue;
        seen.push_back(batch.input_ids[static_cast<size_t>(r * 8)] / 8);
      }
      ++n;
    }
    EXPECT_FALSE(b.next(other));
    EXPECT_EQ(n, 10);
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(37);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all);
    EXPECT_NE(seen, all);  // shuffled
    epochs.push_back(seen);
  }
  EXPECT_EQ(a.epoch(), 2);
  EXPECT_NE(epochs[0], epochs[1]);  // a new permutation per epoch
}

TEST(DataLoader, DropLast) {
  TempDir dir("droplast");
  TokenDataset ds(write_iota(dir, "d.tok", 10 * 4 + 1));  // 10 blocks
  BatchingOptions opt;
  opt.batch_size = 4;
  DataLoader dropped(ds, 4, opt);
  EXPECT_EQ(dropped.num_batches(), 2);
  opt.drop_last = false;
  DataLoader kept(ds, 4, opt);
  ASSERT_EQ(kept.num_batches(), 3);
  Batch last = kept.batch(2);
  EXPECT_EQ(last.rows, 4);  // padded to the full batch: shapes stay fixed
  EXPECT_EQ(last.real_rows, 2);
  for (size_t k = 8; k < 16; ++k) {
    EXPECT_EQ(last.attention_mask[k], 0);
    EXPECT_EQ(last.labels[k], kIgnoreIndex);
  }
  EXPECT_EQ(last.input_ids[0], 32);
  opt.batch_size = 11;
  opt.drop_last = true;
  std::string msg = expect_error([&] { DataLoader dl(ds, 4, opt); });
  EXPECT_NE(msg.find("smaller batch_size"), std::string::npos) << msg;
}

TEST(DataLoader, ShardsPartitionGlobalBatchInOrder) {
  TempDir dir("shard");
  TokenDataset ds(write_iota(dir, "s.tok", 4 * 50 + 1));  // 50 blocks of T = 4
  BatchingOptions opt;
  opt.batch_size = 8;
  opt.shuffle = true;
  opt.seed = 3;
  opt.drop_last = false;
  DataLoader global(ds, 4, opt);
  for (int64_t b = 0; b < global.num_batches(); ++b) {
    Batch g = global.batch(b);
    std::vector<int64_t> joined_ids, joined_labels, joined_mask;
    for (int rank = 0; rank < 4; ++rank) {
      BatchingOptions o = opt;
      o.rank = rank;
      o.world_size = 4;
      DataLoader local(ds, 4, o);
      ASSERT_EQ(local.num_batches(), global.num_batches());
      Batch l = local.batch(b);
      EXPECT_EQ(l.shape(), (solo::Shape{2, 4}));
      joined_ids.insert(joined_ids.end(), l.input_ids.begin(), l.input_ids.end());
      joined_labels.insert(joined_labels.end(), l.labels.begin(), l.labels.end());
      joined_mask.insert(joined_mask.end(), l.attention_mask.begin(), l.attention_mask.end());
    }
    EXPECT_EQ(joined_ids, g.input_ids) << "batch " << b;
    EXPECT_EQ(joined_labels, g.labels) << "batch " << b;
    EXPECT_EQ(joined_mask, g.attention_mask) << "batch " << b;
  }
}

TEST(DataLoader, IndivisibleBatchErrors) {
  TempDir dir("indiv");
  TokenDataset ds(write_iota(dir, "i.tok", 100));
  BatchingOptions opt;
  opt.batch_size = 6;
  opt.world_size = 4;
  std::string msg = expect_error([&] { DataLoader dl(ds, 4, opt); });
  EXPECT_NE(msg.find("batch_size 6"), std::string::npos) << msg;
  EXPECT_NE(msg.find("world_size 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find(" 8"), std::string::npos) << msg;  // the suggested divisible size
  opt.batch_size = 8;
  opt.rank = 4;
  expect_error([&] { DataLoader dl(ds, 4, opt); });
}

TEST(DataLoader, SeekResumesTheSameOrder) {
  TempDir dir("seek");
  TokenDataset ds(write_iota(dir, "s.tok", 4 * 20 + 1));
  BatchingOptions opt;
  opt.batch_size = 2;
  opt.shuffle = true;
  opt.seed = 11;
  DataLoader a(ds, 4, opt), b(ds, 4, opt);
  Batch x, y;
  while (a.next(x)) {
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.next(x));  // epoch 1, batches 0..2
  b.seek(1, 2);
  ASSERT_TRUE(b.next(y));
  EXPECT_EQ(x.input_ids, y.input_ids);
}

TEST(DocumentBatcher, PadsMasksAndLabels) {
  TempDir dir("docs");
  // Documents: [10 11 12], [] (skipped), [20 21 22 23 24 25] (truncated), [30].
  std::vector<int32_t> tokens = {10, 11, 12, 20, 21, 22, 23, 24, 25, 30};
  std::vector<uint64_t> starts = {0, 3, 3, 9};
  write_token_file(dir.file("d.tok"), tokens, starts, TokenDType::U16);
  TokenDataset ds(dir.file("d.tok"));
  BatchingOptions opt;
  opt.batch_size = 4;
  opt.drop_last = false;
  DocumentBatcher db(ds, 4, /*pad_id=*/0, opt);
  EXPECT_EQ(db.num_documents(), 3);
  ASSERT_EQ(db.num_batches(), 1);
  Batch b = db.batch(0);
  EXPECT_EQ(b.shape(), (solo::Shape{4, 4}));
  EXPECT_EQ(b.real_rows, 3);
  const int64_t I = kIgnoreIndex;
  EXPECT_EQ(b.input_ids,
            (std::vector<int64_t>{10, 11, 12, 0, 20, 21, 22, 23, 30, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(b.labels,
            (std::vector<int64_t>{10, 11, 12, I, 20, 21, 22, 23, 30, I, I, I, I, I, I, I}));
  EXPECT_EQ(b.attention_mask,
            (std::vector<int64_t>{1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}));

  // Epoch iteration over shuffled documents visits each once; sharding splits rows.
  opt.batch_size = 2;
  opt.shuffle = true;
  opt.seed = 5;
  opt.world_size = 2;
  std::multiset<int64_t> firsts;
  for (int rank = 0; rank < 2; ++rank) {
    opt.rank = rank;
    DocumentBatcher shard(ds, 4, 2, opt);
    Batch x;
    while (shard.next(x)) {
      EXPECT_EQ(x.shape(), (solo::Shape{1, 4}));
      if (x.real_rows) firsts.insert(x.input_ids[0]);
    }
  }
  EXPECT_EQ(firsts, (std::multiset<int64_t>{10, 20, 30}));
  std::string msg = expect_error([&] { DocumentBatcher bad(ds, 4, -1, BatchingOptions{}); });
  EXPECT_NE(msg.find("pad_id"), std::string::npos) << msg;
}

TEST(Prepare, FortunesEndToEnd) {
  const std::string fortunes = "/usr/share/games/fortunes";
  if (!fs::is_directory(fortunes)) GTEST_SKIP() << fortunes << " is not installed";
  TempDir dir("fortunes");
  auto docs = read_documents(fortunes);
  ASSERT_GT(docs.size(), 100u);
  // A small tokenizer trained on a slice keeps the test fast; byte fallback covers the rest.
  std::vector<std::string> slice(docs.begin(), docs.begin() + 300);
  train_tokenizer(slice, dir.file("tok"), 400);
  auto tok = Tokenizer::load(dir.file("tok.model"));
  PrepareOptions opt;
  opt.append_eos = true;
  auto stats = prepare_token_file(tok, fortunes, dir.file("f.tok"), opt);
  EXPECT_EQ(stats.documents, docs.size());
  TokenDataset ds(dir.file("f.tok"));
  EXPECT_EQ(ds.dtype(), TokenDType::U16);
  EXPECT_EQ(static_cast<uint64_t>(ds.num_tokens()), stats.tokens);
  ASSERT_EQ(static_cast<size_t>(ds.num_documents()), docs.size());
  for (size_t d : {size_t{0}, docs.size() / 2, docs.size() - 1}) {
    auto [b, e] = ds.document(static_cast<int64_t>(d));
    ASSERT_GT(e, b);
    EXPECT_EQ(ds.token(e - 1), tok.eos_id());
    std::vector<int32_t> ids;
    for (int64_t i = b; i < e - 1; ++i) ids.push_back(ds.token(i));
    EXPECT_EQ(tok.decode(ids), docs[d]) << "document " << d;
  }
  // Errors leave nothing behind, and an existing output is kept intact.
  expect_error([&] { prepare_token_file(tok, dir.file("missing"), dir.file("f.tok"), opt); });
  EXPECT_TRUE(solo::test::temp_files_beside(dir.file("f.tok")).empty());
  EXPECT_EQ(TokenDataset(dir.file("f.tok")).num_tokens(), ds.num_tokens());
}
