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

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"

namespace solo::io::detail {

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
  auto probe = [&](const fs::path& where) {
    const std::string name = (where / (".solo-write-check." + unique_name_suffix())).string();
    const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    const int err = errno;
    if (fd >= 0) {
      ::close(fd);
      ::unlink(name.c_str());
    }
    return fd >= 0 ? 0 : err;
  };
  if (const int err = probe(dir)) {
    SOLO_FAIL(flag, " ", dir, " is not writable: ", std::strerror(err),
              "; name a directory you can write");
  }
  fs::path normal = fs::absolute(fs::path(dir)).lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();  // "out/" is out
  const fs::path parent = normal.parent_path();
  if (const int err = probe(parent)) {
    SOLO_FAIL(flag, " ", dir, ": its parent ", parent.string(), " is not writable (",
              std::strerror(err), "); a save is staged beside the directory and swapped in, so ",
              "name a directory whose parent you can write");
  }
}

}  // namespace solo::io::detail
