// Per-user directories: $XDG_CONFIG_HOME/solo (else ~/.config/solo) and $XDG_CACHE_HOME/solo
// (else ~/.cache/solo). Not created here; throws when neither variable nor HOME is set.
#pragma once
#include <string>

namespace solo {

std::string user_config_dir();
std::string user_cache_dir();

}  // namespace solo
