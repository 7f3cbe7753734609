// Op attributes: a small ordered list of named scalars and int lists. Ordered so that
// the structural hash of a graph does not depend on insertion accidents.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace solo {

using AttrValue = std::variant<int64_t, double, std::vector<int64_t>>;

class Attrs {
 public:
  Attrs& set(const std::string& key, int64_t v) { return put(key, v); }
  Attrs& set(const std::string& key, int v) { return put(key, static_cast<int64_t>(v)); }
  Attrs& set(const std::string& key, bool v) { return put(key, static_cast<int64_t>(v)); }
  Attrs& set(const std::string& key, double v) { return put(key, v); }
  Attrs& set(const std::string& key, std::vector<int64_t> v) { return put(key, std::move(v)); }

  bool has(const std::string& key) const;
  int64_t i(const std::string& key) const;  // throws if missing or of another type
  double f(const std::string& key) const;
  const std::vector<int64_t>& ints(const std::string& key) const;
  int64_t i_or(const std::string& key, int64_t fallback) const {
    return has(key) ? i(key) : fallback;
  }

  const std::vector<std::pair<std::string, AttrValue>>& items() const { return items_; }
  uint64_t hash(uint64_t seed) const;
  std::string str() const;  // "axis=1, eps=1e-05"

 private:
  Attrs& put(const std::string& key, AttrValue v);
  const AttrValue& get(const std::string& key) const;
  std::vector<std::pair<std::string, AttrValue>> items_;  // sorted by key
};

}  // namespace solo
