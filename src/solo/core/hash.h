#pragma once
#include <cstdint>
#include <cstring>
#include <string_view>

namespace solo {

// FNV-1a style mixing; stable across runs and platforms (plan caches are keyed by it).
inline uint64_t hash_mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0x100000001b3ull;
}
inline uint64_t hash_bytes(uint64_t h, const void* p, size_t n) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 0x100000001b3ull;
  return h;
}
inline uint64_t hash_str(uint64_t h, std::string_view s) {
  return hash_mix(hash_bytes(h, s.data(), s.size()), s.size());
}
inline uint64_t hash_double(uint64_t h, double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return hash_mix(h, u);
}

}  // namespace solo
