// The tokenizer files that travel with a Hugging Face checkpoint directory.
#pragma once
#include <string>

namespace solo::io {

// Copies the tokenizer files present in `from_dir` (tokenizer.model, tokenizer.json,
// tokenizer_config.json, special_tokens_map.json) into `to_dir`, replacing what is there. One
// process of a job writes; the same directory (saving where the model was loaded from) is
// left as it is.
void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir);
// Whether `name` is one of the tokenizer file names above.
bool is_tokenizer_file(const std::string& name);

}  // namespace solo::io
