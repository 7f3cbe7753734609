#include "solo/tensor/plan_cache.h"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "solo/core/atomic_file.h"
#include "solo/core/hash.h"
#include "solo/core/user_dirs.h"

namespace solo {
namespace {

// Every field of the key, as the file records it (read back and compared: a hash collision or
// a hand-edited file never hands a plan to another step).
nlohmann::json key_json(const PlanCacheKey& k) {
  char step[17];
  std::snprintf(step, sizeof step, "%016llx", static_cast<unsigned long long>(k.step));
  return {{"solo_version", k.version},
          {"step", step},
          {"flavor", k.flavor.name},
          {"device_kind", k.flavor.device_kind},
          {"devices", k.flavor.devices},
          {"devices_per_host", k.flavor.devices_per_host},
          {"device_memory", k.flavor.device_memory},
          {"held_bytes", k.held_bytes}};
}

// A flavor name as a file-name part: letters, digits, '-', '_' and '.' kept, others '_'.
std::string file_part(const std::string& name) {
  std::string out;
  for (char c : name)
    out +=
        std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '_';
  return out.substr(0, 64);
}

}  // namespace

uint64_t step_hash(const ir::Graph& step, const std::vector<ir::ValueId>& outputs,
                   const std::vector<ir::ValueId>& donatable,
                   const std::vector<ir::ValueId>& mapped, bool async_collectives) {
  uint64_t h = step.structural_hash();
  for (const auto* list : {&outputs, &donatable, &mapped}) {
    h = hash_mix(h, list->size());
    for (ir::ValueId v : *list) h = hash_mix(h, static_cast<uint64_t>(v));
  }
  return hash_mix(h, async_collectives ? 1 : 0);
}

std::string plan_cache_path(const PlanCacheKey& key) {
  const uint64_t h = hash_str(0xcbf29ce484222325ull, key_json(key).dump());
  char name[32];
  std::snprintf(name, sizeof name, "-%016llx.json", static_cast<unsigned long long>(h));
  return user_cache_dir() + "/plans/" + file_part(key.flavor.name) + name;
}

std::string read_cached_plan(const PlanCacheKey& key) {
  std::ifstream in(plan_cache_path(key));
  if (!in) return "";
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.at("key") != key_json(key)) return "";
    const std::string spec = j.at("plan").get<std::string>();
    compile::parse_plan_spec(spec, "the plan cache");  // a damaged file plans again
    return spec;
  } catch (const std::exception&) {
    return "";
  }
}

void write_cached_plan(const PlanCacheKey& key, const compile::SearchResult& r) {
  const compile::Candidate& c = r.best();
  size_t fitting = 0;
  for (const compile::Candidate& k : r.candidates) fitting += k.fits;
  const nlohmann::json j = {{"key", key_json(key)},
                            {"plan", c.plan.spec()},
                            {"predicted_step_s", c.step_seconds},
                            {"peak_bytes", c.peak_bytes},
                            {"candidates", r.candidates.size()},
                            {"feasible", fitting},
                            {"search_ms", r.compile_ms + r.select_ms}};
  const std::string path = plan_cache_path(key);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  write_file_atomic(path, j.dump(2) + "\n");
}

void forget_cached_plan(const PlanCacheKey& key) {
  std::error_code ec;
  std::filesystem::remove(plan_cache_path(key), ec);
}

}  // namespace solo
