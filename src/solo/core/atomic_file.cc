#include "solo/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "solo/core/error.h"

namespace solo {

namespace {

// A planted file or symlink at the name we drew is skipped; this many in a row is an attack
// or a broken directory, not bad luck.
constexpr int kCreateAttempts = 16;

std::string parent_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

std::string unique_name_suffix() {
  static std::atomic<uint64_t> counter{0};
  // The random part keeps the names unguessable, so nobody can plant every candidate ahead.
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%ld.%llu.%08llx", static_cast<long>(::getpid()),
                static_cast<unsigned long long>(counter.fetch_add(1)),
                static_cast<unsigned long long>(rng() & 0xffffffffu));
  return buf;
}

AtomicFile::AtomicFile(std::string path, mode_t mode) : path_(std::move(path)) {
  int err = 0;
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    tmp_ = path_ + ".tmp." + unique_name_suffix();
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd_ >= 0) return;
    err = errno;
    if (err != EEXIST) break;
  }
  SOLO_FAIL("cannot write ", path_, ": cannot create a temporary file beside it (", tmp_,
            "): ", std::strerror(err));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    SOLO_CHECK(n > 0, "cannot write ", path_,
               ": write failed: ", n < 0 ? std::strerror(errno) : "no progress (disk full?)");
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFile::write_at(uint64_t offset, std::span<const std::byte> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    SOLO_CHECK(n > 0, "cannot write ", path_,
               ": write failed: ", n < 0 ? std::strerror(errno) : "no progress (disk full?)");
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  SOLO_CHECK(fd_ >= 0, "cannot write ", path_, ": already committed");
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  SOLO_CHECK(::fsync(fd_) == 0, "cannot write ", path_, ": fsync failed: ", std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  SOLO_CHECK(::close(fd) == 0, "cannot write ", path_, ": close failed: ", std::strerror(errno));
  SOLO_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot write ", path_, ": rename from ",
             tmp_, " failed: ", std::strerror(errno));
  committed_ = true;
  fsync_directory(parent_of(path_));
}

void write_file_atomic(const std::string& path,
                       const std::vector<std::span<const std::byte>>& chunks, mode_t mode) {
  AtomicFile file(path, mode);
  for (const auto& chunk : chunks) file.write(chunk);
  file.commit();
}

void write_file_atomic(const std::string& path, std::string_view text, mode_t mode) {
  write_file_atomic(path, {std::as_bytes(std::span(text.data(), text.size()))}, mode);
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  SOLO_CHECK(fd >= 0, "cannot open directory ", dir, " to flush it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  SOLO_CHECK(rc == 0, "cannot flush directory ", dir, ": fsync failed: ", std::strerror(err));
}

}  // namespace solo
