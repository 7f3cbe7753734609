#include "solo/core/json_keys.h"

#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "solo/core/error.h"
#include "solo/core/printable.h"

namespace solo {

namespace {

// SAX events: one set of keys per open object.
struct KeyChecker : nlohmann::json_sax<nlohmann::json> {
  explicit KeyChecker(const std::string& where) : where_(where) {}
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    SOLO_CHECK(keys_.back().insert(k).second, where_, ": key '", printable(k),
               "' appears twice in one object; the file is ambiguous, keep one of them");
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;  // the caller's parser says what is wrong
  }

 private:
  const std::string& where_;
  std::vector<std::set<std::string>> keys_;
};

}  // namespace

void check_unique_json_keys(std::string_view json_text, const std::string& where) {
  KeyChecker checker(where);
  nlohmann::json::sax_parse(json_text, &checker);
}

}  // namespace solo
