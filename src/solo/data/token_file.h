// Token files: tokenized corpora, read for training with pread (no mapping to fault on).
//
// Layout (all integers little-endian, no padding):
//   offset  0: magic "SOLOTOK1" (8 bytes)
//   offset  8: u32 version = 1
//   offset 12: u32 dtype code: 1 = u16 tokens, 2 = i32 tokens (u16 when every id < 65536)
//   offset 16: u64 token count N
//   offset 24: u64 document count D
//   offset 32: N tokens (2 or 4 bytes each)
//   then     : D u64 document start offsets (token indices, non-decreasing, first is 0);
//              document d is tokens [start[d], start[d+1]) and the last ends at N.
// The file size must be exactly 32 + N * token_size + 8 * D.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace solo {
class AtomicFile;
}

namespace solo::data {

enum class TokenDType : uint32_t { U16 = 1, I32 = 2 };

inline constexpr char kTokenFileMagic[8] = {'S', 'O', 'L', 'O', 'T', 'O', 'K', '1'};
inline constexpr uint32_t kTokenFileVersion = 1;
inline constexpr size_t kTokenFileHeaderSize = 32;

size_t token_dtype_size(TokenDType t);
// The narrowest dtype that holds ids in [0, vocab_size).
TokenDType token_dtype_for_vocab(int64_t vocab_size);

// Streams tokens into a temporary file beside `path` (core/atomic_file.h); finish() appends
// the offsets, fills in the header and renames the file to `path`. Destroying an unfinished
// writer removes the temporary file, so an error never leaves a half-written token file.
class TokenFileWriter {
 public:
  TokenFileWriter(std::string path, TokenDType dtype);
  ~TokenFileWriter();
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;

  // Appends one document. Ids must fit the dtype (and be non-negative).
  void add_document(std::span<const int32_t> tokens);
  void finish();

  uint64_t num_tokens() const { return num_tokens_; }
  uint64_t num_documents() const { return doc_starts_.size(); }

 private:
  void write(const void* data, size_t bytes);
  void abandon() noexcept;

  std::string path_;
  TokenDType dtype_;
  std::unique_ptr<AtomicFile> file_;
  uint64_t num_tokens_ = 0;
  std::vector<uint64_t> doc_starts_;
  std::vector<uint8_t> buffer_;
};

// Writes a whole token file at once (documents given by their start offsets into `tokens`).
void write_token_file(const std::string& path, std::span<const int32_t> tokens,
                      std::span<const uint64_t> doc_starts, TokenDType dtype);

// A token file open for reading. Tokens are read with pread() from the open descriptor, so a
// data loader that reads a shard of blocks reads only that shard, a file renamed over this one
// meanwhile changes nothing, and one truncated meanwhile is an error naming it (a memory map
// would kill the process with SIGBUS instead).
class TokenDataset {
 public:
  // Throws solo::Error naming the file when it is missing, foreign, truncated or inconsistent.
  explicit TokenDataset(const std::string& path);
  ~TokenDataset();
  TokenDataset(TokenDataset&& o) noexcept;
  TokenDataset& operator=(TokenDataset&& o) noexcept;
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  const std::string& path() const { return path_; }
  TokenDType dtype() const { return dtype_; }
  int64_t num_tokens() const { return static_cast<int64_t>(num_tokens_); }
  int64_t num_documents() const { return static_cast<int64_t>(num_docs_); }
  int32_t token(int64_t i) const;
  // Copies tokens [begin, begin + out.size()) into `out`.
  void read_tokens(int64_t begin, std::span<int64_t> out) const;
  // Token range [begin, end) of document d; throws if the offsets are inconsistent.
  std::pair<int64_t, int64_t> document(int64_t d) const;
  // The lengths of documents [first, first + out.size()), read in large chunks (a scan of
  // every document costs one read per chunk, not one per document).
  void document_lengths(int64_t first, std::span<int64_t> out) const;

  // Blocks for next-token training: block i is tokens [i*T, i*T + T + 1), so inputs are its
  // first T tokens and labels its last T. Blocks' inputs do not overlap (a block's last label
  // is the next block's first input); a trailing remainder shorter than T + 1 is not used.
  int64_t num_blocks(int64_t block_size) const;
  void block(int64_t i, int64_t block_size, std::span<int64_t> out_ids) const;  // T + 1 ids
  std::vector<int64_t> block(int64_t i, int64_t block_size) const;

 private:
  // Reads exactly `bytes` at `offset`; throws naming the file when it has been truncated.
  void read_exact(uint64_t offset, void* out, size_t bytes) const;
  void release() noexcept;

  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  TokenDType dtype_ = TokenDType::U16;
  uint64_t num_tokens_ = 0;
  uint64_t num_docs_ = 0;
};

}  // namespace solo::data
