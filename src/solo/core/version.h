// Solo's version: the CLI prints it, and caches on disk (CPU profiles, plans) are keyed by it,
// so an upgrade re-measures and re-plans.
#pragma once

namespace solo {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace solo
