#include "solo/core/attrs.h"

#include <algorithm>
#include <sstream>

#include "solo/core/error.h"
#include "solo/core/hash.h"

namespace solo {

Attrs& Attrs::put(const std::string& key, AttrValue v) {
  auto it = std::lower_bound(items_.begin(), items_.end(), key,
                             [](const auto& item, const std::string& k) { return item.first < k; });
  if (it != items_.end() && it->first == key)
    it->second = std::move(v);
  else
    items_.insert(it, {key, std::move(v)});
  return *this;
}

bool Attrs::has(const std::string& key) const {
  for (const auto& [k, v] : items_)
    if (k == key) return true;
  return false;
}

const AttrValue& Attrs::get(const std::string& key) const {
  for (const auto& [k, v] : items_)
    if (k == key) return v;
  SOLO_FAIL("op attribute '", key, "' is missing (attributes: ", str(), ")");
}

int64_t Attrs::i(const std::string& key) const {
  const auto* v = std::get_if<int64_t>(&get(key));
  SOLO_CHECK(v, "op attribute '", key, "' is not an integer");
  return *v;
}
double Attrs::f(const std::string& key) const {
  const auto* v = std::get_if<double>(&get(key));
  SOLO_CHECK(v, "op attribute '", key, "' is not a float");
  return *v;
}
const std::vector<int64_t>& Attrs::ints(const std::string& key) const {
  const auto* v = std::get_if<std::vector<int64_t>>(&get(key));
  SOLO_CHECK(v, "op attribute '", key, "' is not an int list");
  return *v;
}

uint64_t Attrs::hash(uint64_t h) const {
  for (const auto& [k, v] : items_) {
    h = hash_str(h, k);
    h = hash_mix(h, v.index());
    if (const auto* i = std::get_if<int64_t>(&v)) h = hash_mix(h, static_cast<uint64_t>(*i));
    if (const auto* d = std::get_if<double>(&v)) h = hash_double(h, *d);
    if (const auto* l = std::get_if<std::vector<int64_t>>(&v)) {
      h = hash_mix(h, l->size());
      for (int64_t x : *l) h = hash_mix(h, static_cast<uint64_t>(x));
    }
  }
  return h;
}

std::string Attrs::str() const {
  std::ostringstream os;
  bool first = true;
  for (const auto& [k, v] : items_) {
    os << (first ? "" : ", ") << k << '=';
    first = false;
    if (const auto* i = std::get_if<int64_t>(&v)) os << *i;
    if (const auto* d = std::get_if<double>(&v)) os << *d;
    if (const auto* l = std::get_if<std::vector<int64_t>>(&v)) {
      os << '[';
      for (size_t j = 0; j < l->size(); ++j) os << (j ? "," : "") << (*l)[j];
      os << ']';
    }
  }
  return os.str();
}

}  // namespace solo
