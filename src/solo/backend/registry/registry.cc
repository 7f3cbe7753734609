#include "solo/backend/backend.h"
#include "solo/backend/cpu/cpu_backend.h"
#include "solo/backend/meta/meta_backend.h"
#include "solo/backend/reference/reference_backend.h"
#ifdef SOLO_HAVE_CUDA
#include "solo/backend/cuda/cuda_backend.h"
#endif

namespace solo {

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return std::make_unique<CpuBackend>();
  if (name == "meta") return std::make_unique<MetaBackend>();
  if (name == "reference") return std::make_unique<ReferenceBackend>();
#ifdef SOLO_HAVE_CUDA
  if (name == "cuda") return std::make_unique<CudaBackend>();
#else
  SOLO_CHECK(name != "cuda",
             "backend 'cuda' is not built in: install the CUDA toolkit and rebuild");
#endif
  SOLO_FAIL("unknown backend '", name, "': available backends are cpu, meta, reference");
}

}  // namespace solo
