// Atomic file replacement, the one way Solo writes a file that others read: the bytes go to a
// fresh temporary name beside the target (unique per process and per call, created with
// O_EXCL|O_NOFOLLOW so a file or symlink planted there is never written through), are
// fsync'd, renamed over the target, and the directory is fsync'd. A reader sees the old file
// or the new one, never a part; a crash leaves at most a stray "<name>.tmp.*" file.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace solo {

class AtomicFile {
 public:
  // Creates the temporary file beside `path` (whose directory must exist).
  explicit AtomicFile(std::string path, mode_t mode = 0644);
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::span<const std::byte> bytes);
  // Overwrites bytes already written (a header whose counts are known at the end).
  void write_at(uint64_t offset, std::span<const std::byte> bytes);
  // fsync, rename over the target, fsync the directory. Throws naming the path and the cause.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// The chunks, in order, as the new contents of `path`.
void write_file_atomic(const std::string& path,
                       const std::vector<std::span<const std::byte>>& chunks, mode_t mode = 0644);
void write_file_atomic(const std::string& path, std::string_view text, mode_t mode = 0644);

// Flushes a directory's entries (a rename, a new file) to disk. Throws naming the directory.
void fsync_directory(const std::string& dir);

// "<pid>.<counter>.<random hex>": a name part no other call of any process picks.
std::string unique_name_suffix();

}  // namespace solo
