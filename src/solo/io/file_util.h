// File helpers shared by the io writers (internal to solo_io).
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace solo::io::detail {

// Writes the chunks, in order, to path + ".tmp", flushes it to disk and renames it over path,
// so that readers never see a half-written file. Throws solo::Error naming the path.
void write_file_atomic(const std::string& path,
                       const std::vector<std::span<const std::byte>>& chunks);

// Makes sure `dir` is a directory this process can write into, creating it (and its parents)
// if needed: checked before a long run, not after it. Throws naming `flag` (the option that
// gave the path), the path and the cause.
void ensure_writable_directory(const std::string& dir, const char* flag);

// Reads a whole (small) text file; throws solo::Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path, const char* what);

}  // namespace solo::io::detail
