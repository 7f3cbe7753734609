#include "solo/data/unicode_nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "solo/data/utf8.h"

namespace solo::data {
namespace {

struct CombiningClassRange {
  char32_t first, last;
  uint8_t ccc;
};
struct Decomposition {
  char32_t cp, first, second;  // second == 0: a singleton
};
struct Composition {
  char32_t first, second, composite;
};
#include "solo/data/unicode_nfc_table.inc"

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCombiningClass), std::end(kCombiningClass), cp,
                             [](char32_t c, const CombiningClassRange& r) { return c < r.first; });
  if (it == std::begin(kCombiningClass)) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecomposition), std::end(kDecomposition), cp,
                             [](const Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == std::end(kDecomposition) || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second) decompose(it->second, out);
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = std::lower_bound(std::begin(kComposition), std::end(kComposition), a,
                             [](const Composition& c, char32_t x) { return c.first < x; });
  for (; it != std::end(kComposition) && it->first == a; ++it)
    if (it->second == b) return it->composite;
  return 0;
}

}  // namespace

std::string nfc(std::string_view utf8) {
  // Below U+0300 every character is its own NFC and none composes with what precedes it.
  if (std::all_of(utf8.begin(), utf8.end(), [](char c) { return static_cast<uint8_t>(c) < 0xCC; }))
    return std::string(utf8);
  std::vector<char32_t> d;
  for (char32_t cp : utf8_code_points(utf8)) decompose(cp, d);
  // Canonical ordering: each run of non-starters sorted by combining class, stably.
  std::vector<uint8_t> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = combining_class(d[i]);
  for (size_t i = 1; i < d.size(); ++i) {
    for (size_t j = i; j > 0 && ccc[j] != 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(d[j], d[j - 1]);
      std::swap(ccc[j], ccc[j - 1]);
    }
  }
  // Canonical composition: a character joins the last starter unless blocked by a character
  // in between of class 0 or of a class not below its own.
  std::vector<char32_t> out;
  out.reserve(d.size());
  ptrdiff_t starter = -1;
  int last_ccc = -1;  // class of the last character kept after the starter; -1: none
  for (size_t i = 0; i < d.size(); ++i) {
    const int cc = ccc[i];
    if (starter >= 0 && (last_ccc == -1 || last_ccc < cc)) {
      if (char32_t c = compose(out[static_cast<size_t>(starter)], d[i])) {
        out[static_cast<size_t>(starter)] = c;
        continue;
      }
    }
    if (cc == 0) {
      starter = static_cast<ptrdiff_t>(out.size());
      last_ccc = -1;
    } else {
      last_ccc = cc;
    }
    out.push_back(d[i]);
  }
  std::string s;
  s.reserve(utf8.size());
  for (char32_t cp : out) append_utf8(s, cp);
  return s;
}

}  // namespace solo::data
