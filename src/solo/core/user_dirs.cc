#include "solo/core/user_dirs.h"

#include <cstdlib>

#include "solo/core/error.h"

namespace solo {

namespace {
std::string user_dir(const char* xdg_variable, const char* under_home) {
  const char* xdg = std::getenv(xdg_variable);
  if (xdg && *xdg) return std::string(xdg) + "/solo";
  const char* home = std::getenv("HOME");
  SOLO_CHECK(home && *home, "neither ", xdg_variable, " nor HOME is set; set one of them");
  return std::string(home) + under_home;
}
}  // namespace

std::string user_config_dir() {
  return user_dir("XDG_CONFIG_HOME", "/.config/solo");
}

std::string user_cache_dir() {
  return user_dir("XDG_CACHE_HOME", "/.cache/solo");
}

}  // namespace solo
