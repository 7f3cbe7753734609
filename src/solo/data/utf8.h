// UTF-8: validation, code points, and Rust's lossy decoding (what Hugging Face tokenizers'
// decoders return for bytes that are not UTF-8).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace solo::data {

// The offset of the first byte that does not start a well-formed UTF-8 sequence (overlong
// forms, surrogates and code points past U+10FFFF are ill-formed), or npos when `text` is
// all well-formed.
size_t utf8_invalid_offset(std::string_view text);

// The code points of well-formed UTF-8 text (check it with utf8_invalid_offset first).
std::vector<char32_t> utf8_code_points(std::string_view text);
// Appends the UTF-8 form of a code point (<= U+10FFFF, not a surrogate).
void append_utf8(std::string& out, char32_t cp);

// `bytes` with each maximal ill-formed subsequence replaced by U+FFFD, the way Rust's
// String::from_utf8_lossy (and the Unicode standard's recommended practice) does.
std::string utf8_lossy(std::string_view bytes);

}  // namespace solo::data
