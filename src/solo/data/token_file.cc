#include "solo/data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
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
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SOLO_CHECK(fd >= 0, "token file: cannot open ", path, ": ", std::strerror(errno),
             "; create it with solo_prepare_data");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    SOLO_FAIL("token file: cannot stat ", path);
  }
  size_t size = static_cast<size_t>(st.st_size);
  if (size < kTokenFileHeaderSize) {
    ::close(fd);
    SOLO_FAIL("token file: ", path, " is truncated (", size, " bytes, shorter than the ",
              kTokenFileHeaderSize, "-byte header)");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file alive
  SOLO_CHECK(p != MAP_FAILED, "token file: cannot mmap ", path, ": ", std::strerror(errno));
  data_ = static_cast<const uint8_t*>(p);
  size_ = size;

  try {
    SOLO_CHECK(std::memcmp(data_, kTokenFileMagic, 8) == 0, "token file: ", path,
               " is not a Solo token file (bad magic); create it with solo_prepare_data");
    uint32_t version, code;
    std::memcpy(&version, data_ + 8, 4);
    std::memcpy(&code, data_ + 12, 4);
    std::memcpy(&num_tokens_, data_ + 16, 8);
    std::memcpy(&num_docs_, data_ + 24, 8);
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
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

TokenDataset::TokenDataset(TokenDataset&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      dtype_(o.dtype_),
      num_tokens_(std::exchange(o.num_tokens_, 0)),
      num_docs_(std::exchange(o.num_docs_, 0)) {}

TokenDataset& TokenDataset::operator=(TokenDataset&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    dtype_ = o.dtype_;
    num_tokens_ = std::exchange(o.num_tokens_, 0);
    num_docs_ = std::exchange(o.num_docs_, 0);
  }
  return *this;
}

int32_t TokenDataset::token(int64_t i) const {
  SOLO_CHECK(i >= 0 && static_cast<uint64_t>(i) < num_tokens_, "token file: index ", i,
             " out of range [0, ", num_tokens_, ") in ", path_);
  const uint8_t* base = data_ + kTokenFileHeaderSize;
  if (dtype_ == TokenDType::U16) {
    uint16_t v;
    std::memcpy(&v, base + 2 * i, 2);
    return v;
  }
  int32_t v;
  std::memcpy(&v, base + 4 * i, 4);
  return v;
}

void TokenDataset::read_tokens(int64_t begin, std::span<int64_t> out) const {
  uint64_t n = out.size();
  SOLO_CHECK(begin >= 0 && static_cast<uint64_t>(begin) <= num_tokens_ &&
                 n <= num_tokens_ - static_cast<uint64_t>(begin),
             "token file: range [", begin, ", ", begin + static_cast<int64_t>(n),
             ") out of range [0, ", num_tokens_, ") in ", path_);
  const uint8_t* base = data_ + kTokenFileHeaderSize;
  if (dtype_ == TokenDType::U16) {
    const uint8_t* p = base + 2 * begin;
    for (uint64_t k = 0; k < n; ++k) {
      uint16_t v;
      std::memcpy(&v, p + 2 * k, 2);
      out[k] = v;
    }
  } else {
    const uint8_t* p = base + 4 * begin;
    for (uint64_t k = 0; k < n; ++k) {
      int32_t v;
      std::memcpy(&v, p + 4 * k, 4);
      out[k] = v;
    }
  }
}

uint64_t TokenDataset::doc_start(uint64_t d) const {
  if (d >= num_docs_) return num_tokens_;
  uint64_t v;
  std::memcpy(&v, data_ + kTokenFileHeaderSize + num_tokens_ * token_dtype_size(dtype_) + 8 * d, 8);
  return v;
}

std::pair<int64_t, int64_t> TokenDataset::document(int64_t d) const {
  SOLO_CHECK(d >= 0 && static_cast<uint64_t>(d) < num_docs_, "token file: document ", d,
             " out of range [0, ", num_docs_, ") in ", path_);
  uint64_t b = doc_start(static_cast<uint64_t>(d)), e = doc_start(static_cast<uint64_t>(d) + 1);
  SOLO_CHECK(b <= e && e <= num_tokens_ && (d > 0 || b == 0), "token file: ", path_,
             " has inconsistent offsets for document ", d, " (", b, ", ", e, ")");
  return {static_cast<int64_t>(b), static_cast<int64_t>(e)};
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
