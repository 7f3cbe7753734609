// The meta backend: shapes only. It accounts allocations (so memory plans can be checked
// for any model on any machine) but allocates nothing and runs no kernel.
#pragma once
#include "solo/backend/backend.h"

namespace solo {

class MetaBackend final : public Backend {
 public:
  const char* name() const override { return "meta"; }
  bool holds_data() const override { return false; }
  void run(const KernelCall&) const override {}
  void copy_from_host(void*, const void*, size_t) const override {}
  void copy_to_host(void*, const void*, size_t) const override {}
  void copy(void*, const void*, size_t) const override {}

 protected:
  void* raw_allocate(size_t) override { return nullptr; }
  void raw_deallocate(void*, size_t) override {}
};

}  // namespace solo
