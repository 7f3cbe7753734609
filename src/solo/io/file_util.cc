#include "solo/io/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "solo/core/error.h"

namespace solo::io::detail {

namespace {

// Closes the descriptor and removes the temporary file unless the write was committed.
class TmpFile {
 public:
  TmpFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~TmpFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) std::remove(path_.c_str());
  }
  TmpFile(const TmpFile&) = delete;
  TmpFile& operator=(const TmpFile&) = delete;
  int fd() const { return fd_; }
  void close_fd() {
    const int fd = fd_;
    fd_ = -1;
    SOLO_CHECK(::close(fd) == 0, "cannot write ", path_, ": close failed: ", std::strerror(errno));
  }
  void commit() { committed_ = true; }

 private:
  std::string path_;
  int fd_;
  bool committed_ = false;
};

}  // namespace

void write_file_atomic(const std::string& path,
                       const std::vector<std::span<const std::byte>>& chunks) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SOLO_CHECK(fd >= 0, "cannot write ", path, ": cannot create ", tmp, ": ", std::strerror(errno));
  TmpFile file(tmp, fd);
  for (const auto& chunk : chunks) {
    const std::byte* p = chunk.data();
    size_t left = chunk.size();
    while (left > 0) {
      const ssize_t n = ::write(file.fd(), p, left);
      if (n < 0 && errno == EINTR) continue;
      SOLO_CHECK(n > 0, "cannot write ", path, ": write failed: ", std::strerror(errno));
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  SOLO_CHECK(::fsync(file.fd()) == 0, "cannot write ", path,
             ": fsync failed: ", std::strerror(errno));
  file.close_fd();
  SOLO_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot write ", path, ": rename from ",
             tmp, " failed: ", std::strerror(errno));
  file.commit();
}

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  SOLO_CHECK(in, what, " at ", path, ": cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  SOLO_CHECK(!in.bad(), what, " at ", path, ": read failed");
  return ss.str();
}

void ensure_writable_directory(const std::string& dir, const char* flag) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    SOLO_CHECK(fs::is_directory(dir, ec), flag, " ", dir,
               " exists and is not a directory; name a directory to save into");
  } else {
    fs::create_directories(dir, ec);
    SOLO_CHECK(!ec, flag, " ", dir, " cannot be created: ", ec.message(),
               "; name a directory you can write");
  }
  // A probe file of this process's own (O_EXCL: never someone else's) proves write access.
  const std::string probe =
      (fs::path(dir) / (".solo-write-check." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  SOLO_CHECK(fd >= 0, flag, " ", dir, " is not writable: ", std::strerror(errno),
             "; name a directory you can write");
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace solo::io::detail
