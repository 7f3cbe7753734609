// File helpers shared by the io writers (internal to solo_io).
#pragma once
#include <string>

namespace solo::io::detail {

// Makes sure `dir` is a directory this process can write into, creating it (and its parents)
// if needed, and that its parent is writable too (a checkpoint is staged beside `dir` and
// swapped in): checked before a long run, not after it. Throws naming `flag` (the option that
// gave the path), the path and the cause.
void ensure_writable_directory(const std::string& dir, const char* flag);

// Reads a whole (small) text file; throws solo::Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path, const char* what);

}  // namespace solo::io::detail
