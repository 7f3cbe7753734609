// The temporary files an atomic write (core/atomic_file.h) leaves beside `path`: entries of
// its directory named "<file name>.tmp" or "<file name>.tmp.*". Tests expect none after a
// write, failed or not.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace solo::test {

inline std::vector<std::string> temp_files_beside(const std::filesystem::path& path) {
  const std::string prefix = path.filename().string() + ".tmp";
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(path.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name == prefix || name.starts_with(prefix + ".")) found.push_back(name);
  }
  return found;
}

}  // namespace solo::test
