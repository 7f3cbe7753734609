#include "solo/data/token_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"

namespace solo::data {

// The format is little-endian and we copy integers straight from the map.
static_assert(std::endian::native == std::endian::little,
              "token files assume a little-endian host");

size_t token_dtype_size(TokenDType t) {
  return t == TokenDType::U16 ? 2 : 4;
}

TokenDType token_dtype_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDType::U16 : TokenDType::I32;
}

// ---- writer ----

TokenFileWriter::TokenFileWriter(std::string path, TokenDType dtype)
    : path_(std::move(path)), dtype_(dtype) {
  SOLO_CHECK(dtype == TokenDType::U16 || dtype == TokenDType::I32,
             "token file: unknown dtype code ", static_cast<uint32_t>(dtype));
  file_ = std::make_unique<AtomicFile>(path_);
  // Placeholder header; finish() rewrites it once the counts are known.
  uint8_t zeros[kTokenFileHeaderSize] = {};
  write(zeros, sizeof zeros);
}

TokenFileWriter::~TokenFileWriter() = default;

void TokenFileWriter::abandon() noexcept {
  file_.reset();  // removes the temporary file
}

void TokenFileWriter::write(const void* data, size_t bytes) {
  try {
    file_->write({static_cast<const std::byte*>(data), bytes});
  } catch (...) {
    abandon();
    throw;
  }
}

void TokenFileWriter::add_document(std::span<const int32_t> tokens) {
  SOLO_CHECK(file_, "token file: ", path_, " is already finished");
  const int64_t max_id = dtype_ == TokenDType::U16 ? 65535 : std::numeric_limits<int32_t>::max();
  doc_starts_.push_back(num_tokens_);
  buffer_.resize(tokens.size() * token_dtype_size(dtype_));
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t t = tokens[i];
    if (t < 0 || t > max_id) {
      abandon();
      SOLO_FAIL("token file: token id ", t, " does not fit ",
                dtype_ == TokenDType::U16 ? "u16" : "i32", " in ", path_);
    }
    if (dtype_ == TokenDType::U16) {
      auto v = static_cast<uint16_t>(t);
      std::memcpy(buffer_.data() + 2 * i, &v, 2);
    } else {
      std::memcpy(buffer_.data() + 4 * i, &t, 4);
    }
  }
  write(buffer_.data(), buffer_.size());
  num_tokens_ += tokens.size();
}

void TokenFileWriter::finish() {
  SOLO_CHECK(file_, "token file: ", path_, " is already finished");
  write(doc_starts_.data(), doc_starts_.size() * sizeof(uint64_t));
  uint8_t header[kTokenFileHeaderSize];
  uint32_t version = kTokenFileVersion, code = static_cast<uint32_t>(dtype_);
  uint64_t ndocs = doc_starts_.size();
  std::memcpy(header, kTokenFileMagic, 8);
  std::memcpy(header + 8, &version, 4);
  std::memcpy(header + 12, &code, 4);
  std::memcpy(header + 16, &num_tokens_, 8);
  std::memcpy(header + 24, &ndocs, 8);
  const std::unique_ptr<AtomicFile> file = std::move(file_);  // removes the temp file on error
  file->write_at(0, std::as_bytes(std::span(header)));
  file->commit();
}

void write_token_file(const std::string& path, std::span<const int32_t> tokens,
                      std::span<const uint64_t> doc_starts, TokenDType dtype) {
  for (size_t d = 0; d < doc_starts.size(); ++d) {
    uint64_t end = d + 1 < doc_starts.size() ? doc_starts[d + 1] : tokens.size();
    SOLO_CHECK(doc_starts[d] <= end && end <= tokens.size() && (d > 0 || doc_starts[0] == 0),
               "write_token_file: document offsets must start at 0 and be non-decreasing");
  }
  SOLO_CHECK(!doc_starts.empty() || tokens.empty(),
             "write_token_file: tokens given without any document offsets");
  TokenFileWriter w(path, dtype);
  for (size_t d = 0; d < doc_starts.size(); ++d) {
    uint64_t end = d + 1 < doc_starts.size() ? doc_starts[d + 1] : tokens.size();
    w.add_document(tokens.subspan(doc_starts[d], end - doc_starts[d]));
  }
  w.finish();
}

// ---- reader ----

TokenDataset::TokenDataset(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SOLO_CHECK(fd_ >= 0, "token file: cannot open ", path, ": ", std::strerror(errno),
             "; create it with solo_prepare_data");
  try {
    struct stat st {};
    SOLO_CHECK(::fstat(fd_, &st) == 0, "token file: cannot stat ", path, ": ",
               std::strerror(errno));
    size_ = static_cast<uint64_t>(st.st_size);
    SOLO_CHECK(size_ >= kTokenFileHeaderSize, "token file: ", path, " is truncated (", size_,
               " bytes, shorter than the ", kTokenFileHeaderSize, "-byte header)");
    uint8_t header[kTokenFileHeaderSize];
    read_exact(0, header, sizeof header);
    SOLO_CHECK(std::memcmp(header, kTokenFileMagic, 8) == 0, "token file: ", path,
               " is not a Solo token file (bad magic); create it with solo_prepare_data");
    uint32_t version, code;
    std::memcpy(&version, header + 8, 4);
    std::memcpy(&code, header + 12, 4);
    std::memcpy(&num_tokens_, header + 16, 8);
    std::memcpy(&num_docs_, header + 24, 8);
    SOLO_CHECK(version == kTokenFileVersion, "token file: ", path, " has version ", version,
               ", this build reads version ", kTokenFileVersion);
    SOLO_CHECK(code == 1 || code == 2, "token file: ", path, " has unknown dtype code ", code);
    dtype_ = static_cast<TokenDType>(code);
    // Sizes in the header are untrusted: compare without overflowing.
    uint64_t body = size_ - kTokenFileHeaderSize;
    uint64_t tsize = token_dtype_size(dtype_);
    bool fits = num_tokens_ <= body / tsize && num_docs_ <= (body - num_tokens_ * tsize) / 8;
    uint64_t expected = fits ? kTokenFileHeaderSize + num_tokens_ * tsize + num_docs_ * 8 : 0;
    SOLO_CHECK(fits && expected == size_, "token file: ", path, " is ",
               fits ? "larger than its header says" : "truncated", " (", size_, " bytes for ",
               num_tokens_, " tokens and ", num_docs_, " documents)");
  } catch (...) {
    release();
    throw;
  }
}

TokenDataset::~TokenDataset() {
  release();
}

void TokenDataset::release() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  size_ = 0;
}

TokenDataset::TokenDataset(TokenDataset&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(std::exchange(o.fd_, -1)),
      size_(std::exchange(o.size_, 0)),
      dtype_(o.dtype_),
      num_tokens_(std::exchange(o.num_tokens_, 0)),
      num_docs_(std::exchange(o.num_docs_, 0)) {}

TokenDataset& TokenDataset::operator=(TokenDataset&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    size_ = std::exchange(o.size_, 0);
    dtype_ = o.dtype_;
    num_tokens_ = std::exchange(o.num_tokens_, 0);
    num_docs_ = std::exchange(o.num_docs_, 0);
  }
  return *this;
}

void TokenDataset::read_exact(uint64_t offset, void* out, size_t bytes) const {
  auto* p = static_cast<uint8_t*>(out);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd_, p + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    SOLO_CHECK(n >= 0, "token file ", path_, ": read failed: ", std::strerror(errno));
    // A read past the end: someone truncated the file we opened (a file renamed over it
    // cannot cause this, the descriptor keeps reading the one we opened).
    SOLO_CHECK(n > 0, "token file ", path_, " was truncated or replaced while training (expected ",
               bytes, " bytes at offset ", offset, ", read ", done, "); restore it and restart");
    done += static_cast<size_t>(n);
  }
}

int32_t TokenDataset::token(int64_t i) const {
  SOLO_CHECK(i >= 0 && static_cast<uint64_t>(i) < num_tokens_, "token file: index ", i,
             " out of range [0, ", num_tokens_, ") in ", path_);
  int64_t v = 0;
  read_tokens(i, std::span(&v, 1));
  return static_cast<int32_t>(v);
}

void TokenDataset::read_tokens(int64_t begin, std::span<int64_t> out) const {
  uint64_t n = out.size();
  SOLO_CHECK(begin >= 0 && static_cast<uint64_t>(begin) <= num_tokens_ &&
                 n <= num_tokens_ - static_cast<uint64_t>(begin),
             "token file: range [", begin, ", ", begin + static_cast<int64_t>(n),
             ") out of range [0, ", num_tokens_, ") in ", path_);
  // Read with pread, not from a memory map: a file truncated under a map kills the process
  // with SIGBUS, a short read is an error we can name.
  const size_t tsize = token_dtype_size(dtype_);
  constexpr size_t kChunk = 8192;  // tokens per read: a row of a batch is one read
  uint8_t buf[kChunk * 4];
  for (uint64_t k0 = 0; k0 < n; k0 += kChunk) {
    const size_t m = static_cast<size_t>(std::min<uint64_t>(kChunk, n - k0));
    read_exact(kTokenFileHeaderSize + (static_cast<uint64_t>(begin) + k0) * tsize, buf, m * tsize);
    if (dtype_ == TokenDType::U16) {
      for (size_t k = 0; k < m; ++k) {
        uint16_t v;
        std::memcpy(&v, buf + 2 * k, 2);
        out[k0 + k] = v;
      }
    } else {
      for (size_t k = 0; k < m; ++k) {
        int32_t v;
        std::memcpy(&v, buf + 4 * k, 4);
        out[k0 + k] = v;
      }
    }
  }
}

std::pair<int64_t, int64_t> TokenDataset::document(int64_t d) const {
  SOLO_CHECK(d >= 0 && static_cast<uint64_t>(d) < num_docs_, "token file: document ", d,
             " out of range [0, ", num_docs_, ") in ", path_);
  // Both offsets in one read; the last document ends at the token count.
  uint64_t starts[2] = {0, num_tokens_};
  const uint64_t u = static_cast<uint64_t>(d);
  read_exact(kTokenFileHeaderSize + num_tokens_ * token_dtype_size(dtype_) + 8 * u, starts,
             u + 1 < num_docs_ ? 16 : 8);
  const uint64_t b = starts[0], e = starts[1];
  SOLO_CHECK(b <= e && e <= num_tokens_ && (d > 0 || b == 0), "token file: ", path_,
             " has inconsistent offsets for document ", d, " (", b, ", ", e, ")");
  return {static_cast<int64_t>(b), static_cast<int64_t>(e)};
}

void TokenDataset::document_lengths(int64_t first, std::span<int64_t> out) const {
  const uint64_t n = out.size();
  SOLO_CHECK(first >= 0 && static_cast<uint64_t>(first) <= num_docs_ &&
                 n <= num_docs_ - static_cast<uint64_t>(first),
             "token file: documents [", first, ", ", first + static_cast<int64_t>(n),
             ") out of range [0, ", num_docs_, ") in ", path_);
  const uint64_t table = kTokenFileHeaderSize + num_tokens_ * token_dtype_size(dtype_);
  constexpr size_t kChunk = 4096;
  uint64_t starts[kChunk + 1];
  for (uint64_t k0 = 0; k0 < n; k0 += kChunk) {
    const uint64_t d0 = static_cast<uint64_t>(first) + k0;
    const size_t m = static_cast<size_t>(std::min<uint64_t>(kChunk, n - k0));
    const size_t with_next = d0 + m < num_docs_ ? m + 1 : m;
    read_exact(table + 8 * d0, starts, 8 * with_next);
    if (with_next == m) starts[m] = num_tokens_;
    for (size_t k = 0; k < m; ++k) {
      SOLO_CHECK(starts[k] <= starts[k + 1] && starts[k + 1] <= num_tokens_ &&
                     (d0 + k > 0 || starts[0] == 0),
                 "token file: ", path_, " has inconsistent offsets for document ", d0 + k, " (",
                 starts[k], ", ", starts[k + 1], ")");
      out[k0 + k] = static_cast<int64_t>(starts[k + 1] - starts[k]);
    }
  }
}

int64_t TokenDataset::num_blocks(int64_t block_size) const {
  SOLO_CHECK(block_size > 0, "token file: block_size must be positive, got ", block_size);
  if (num_tokens_ < static_cast<uint64_t>(block_size) + 1) return 0;
  return static_cast<int64_t>((num_tokens_ - 1) / static_cast<uint64_t>(block_size));
}

void TokenDataset::block(int64_t i, int64_t block_size, std::span<int64_t> out_ids) const {
  int64_t n = num_blocks(block_size);
  SOLO_CHECK(i >= 0 && i < n, "token file: block ", i, " out of range [0, ", n, ") for block_size ",
             block_size, " in ", path_);
  SOLO_CHECK(static_cast<int64_t>(out_ids.size()) == block_size + 1,
             "token file: block output must hold block_size + 1 = ", block_size + 1, " ids, got ",
             out_ids.size());
  read_tokens(i * block_size, out_ids);
}

std::vector<int64_t> TokenDataset::block(int64_t i, int64_t block_size) const {
  std::vector<int64_t> out(static_cast<size_t>(std::max<int64_t>(block_size, 0)) + 1);
  block(i, block_size, out);
  return out;
}

}  // namespace solo::data
