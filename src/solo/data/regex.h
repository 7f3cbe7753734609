// A compiled PCRE2 regular expression over UTF-8 text (Unicode properties for \s, \p{L},
// \w, case folding; JIT-compiled where the platform has it), as tokenizer.json's Split
// pre-tokenizers use them. Hugging Face tokenizers runs them with Oniguruma, whose \s is
// Unicode White_Space; PCRE2's also takes U+180E, so \s and \S are rewritten to White_Space
// before compiling (not \S inside a [...] class). Otherwise the patterns of Llama 3, Qwen2 and
// GPT-2 mean the same in both (the Unicode versions of \p{L} and \p{N} may differ for the
// newest characters).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace solo::data {

class Regex {
 public:
  // `literal`: the pattern is a plain string, not a regular expression. Throws solo::Error
  // naming `what` (where the pattern comes from), the pattern and PCRE2's reason when it does
  // not compile.
  Regex(const std::string& pattern, bool literal, const std::string& what);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // The non-empty matches in `text` (well-formed UTF-8), as [begin, end) byte offsets, left
  // to right. After an empty match the search goes on one character further (Oniguruma's
  // find_iter). Thread-safe.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string pattern_;
  std::string what_;
};

}  // namespace solo::data
