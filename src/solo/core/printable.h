// Text from files (tensor names, config strings) quoted in messages: control characters are
// escaped, so a name cannot rewrite the terminal or hide a line break in an error.
#pragma once
#include <string>
#include <string_view>

namespace solo {

// Bytes below 0x20, 0x7f and a backslash become \n, \t, \\ or \xNN; the rest is kept.
std::string printable(std::string_view text);

}  // namespace solo
