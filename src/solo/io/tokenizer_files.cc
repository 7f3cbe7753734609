#include "solo/io/tokenizer_files.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/core/process_place.h"
#include "solo/io/file_util.h"

namespace fs = std::filesystem;

namespace solo::io {

namespace {

constexpr const char* kTokenizerFiles[] = {"tokenizer.model", "tokenizer.json",
                                           "tokenizer_config.json", "special_tokens_map.json"};

}  // namespace

bool is_tokenizer_file(const std::string& name) {
  for (const char* f : kTokenizerFiles)
    if (name == f) return true;
  return false;
}

void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir) {
  if (!process_place().writes_files()) return;
  std::error_code ec;
  if (fs::equivalent(from_dir, to_dir, ec)) return;  // already there
  for (const char* name : kTokenizerFiles) {
    const fs::path from = fs::path(from_dir) / name;
    if (!fs::is_regular_file(from, ec)) continue;
    std::ifstream in(from, std::ios::binary);
    SOLO_CHECK(in, "cannot read ", from.string(), "; check its permissions");
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    SOLO_CHECK(!in.bad(), "cannot read ", from.string());
    // Written beside the target and renamed over it: never a half-written tokenizer.
    write_file_atomic((fs::path(to_dir) / name).string(), {std::as_bytes(std::span(bytes))});
  }
}

}  // namespace solo::io
