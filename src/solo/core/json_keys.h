// JSON objects with a key given twice are ambiguous (parsers keep the first or the last):
// the files Solo reads (safetensors headers, config.json, the inventory) are refused then.
#pragma once
#include <string>
#include <string_view>

namespace solo {

// Throws "<where>: key '<k>' appears twice in one object" for the first repeated key of any
// object in `json_text`; text that is not JSON is left to the caller's parser to report.
void check_unique_json_keys(std::string_view json_text, const std::string& where);

}  // namespace solo
