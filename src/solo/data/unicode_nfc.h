// Unicode Normalization Form C (canonical decomposition, then canonical composition), the
// `NFC` normalizer of Hugging Face tokenizer.json files (Qwen2 and later). The data come
// from scripts/make_nfc_table.py (its Unicode version is in unicode_nfc_table.inc).
#pragma once
#include <string>
#include <string_view>

namespace solo::data {

// NFC of well-formed UTF-8 text (check with utf8_invalid_offset first).
std::string nfc(std::string_view utf8);

}  // namespace solo::data
