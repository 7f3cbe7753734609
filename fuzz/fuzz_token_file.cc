// libFuzzer target: a token file's bytes opened as a TokenDataset, then a few tokens, blocks
// and documents read. TokenDataset reads a path with pread, so the input goes into a memory
// file opened through /proc/self/fd. A solo::Error is the expected answer to bad input;
// anything else (another exception, a crash, a sanitizer report) is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "solo/core/error.h"
#include "solo/data/token_file.h"

namespace {

// One memory file for the whole run, rewritten for each input.
int input_fd() {
  static const int fd = [] {
    const int f = ::memfd_create("solo-fuzz-token-file", MFD_CLOEXEC);
    if (f < 0) std::abort();
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = input_fd();
  if (::ftruncate(fd, 0) != 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const solo::data::TokenDataset ds(path);
    const int64_t tokens = ds.num_tokens();
    if (tokens > 0) {
      ds.token(0);
      ds.token(tokens - 1);
    }
    for (int64_t t : {1, 3, 64}) {
      const int64_t blocks = ds.num_blocks(t);
      for (int64_t i : {int64_t{0}, blocks - 1})
        if (i >= 0 && i < blocks) ds.block(i, t);
    }
    const int64_t docs = ds.num_documents();
    std::vector<int64_t> lengths(static_cast<size_t>(std::min<int64_t>(docs, 64)));
    ds.document_lengths(0, lengths);
    for (int64_t d = 0; d < std::min<int64_t>(docs, 8); ++d) {
      const auto [b, e] = ds.document(d);
      if (b < 0 || b > e || e > tokens) std::abort();  // document() promises a valid range
    }
  } catch (const solo::Error&) {
  }
  return 0;
}
