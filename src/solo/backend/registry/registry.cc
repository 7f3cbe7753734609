#include "solo/backend/backend.h"
#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/meta/meta_backend.h"
#include "solo/backend/reference/reference_backend.h"

namespace solo {

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return std::make_unique<CpuBackend>();
  if (name == "meta") return std::make_unique<MetaBackend>();
  if (name == "reference") return std::make_unique<ReferenceBackend>();
  SOLO_FAIL("unknown backend '", name, "': available backends are cpu, meta, reference");
}

}  // namespace solo
