// Errors: every failure a user can cause is a solo::Error with a one-line message
// that names the cause and, where there is one, the fix.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace solo {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace solo

// SOLO_CHECK(cond, "message parts", value, ...) throws solo::Error when cond is false.
#define SOLO_CHECK(cond, ...)                                              \
  do {                                                                     \
    if (!(cond)) throw ::solo::Error(::solo::detail::concat(__VA_ARGS__)); \
  } while (0)

#define SOLO_FAIL(...) throw ::solo::Error(::solo::detail::concat(__VA_ARGS__))
