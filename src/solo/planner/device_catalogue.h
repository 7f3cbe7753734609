// What the planner knows of an accelerator: its memory, peak rates from the vendor's data
// sheet (dense, no sparsity), its links, and the fraction of each peak that real kernels
// reach (efficiencies, assumptions documented in docs/architecture.md). Predictions built
// from these never exceed the data-sheet peaks: efficiencies are at most 1.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "solo/core/dtype.h"

namespace solo::planner {

struct DeviceProfile {
  std::string name;           // "h100", "h200", "a100-40", "a100-80", "mi250", "mi210", "mi300x"
  double memory_bytes;        // device memory
  double matrix_flops_16bit;  // bf16/f16 matrix peak (tensor / matrix cores), FLOP/s
  double vector_flops_32bit;  // f32 peak without TF32 (what an f32 GEMM gets here), FLOP/s
  double memory_bandwidth;    // bytes/s
  double intra_host_link;     // bytes/s per direction per device (NVLink, Infinity Fabric)
  double inter_host_link;     // bytes/s per direction per device (InfiniBand / RoCE NIC)
  // Fractions of the peaks reached in practice (GEMMs and attention, memory-bound kernels,
  // collectives), the launch overhead of one kernel and the latency of one collective.
  double matrix_efficiency = 0.75;
  double memory_efficiency = 0.8;
  double link_efficiency = 0.8;
  double kernel_launch_s = 5e-6;
  double collective_latency_s = 15e-6;
  // Bytes/s of memory-bound kernels on 16-bit floats (0: memory_bandwidth). A host widens
  // each element to f32 and rounds it back, so it streams them slower than their bytes
  // suggest; accelerators convert for free.
  double memory_bandwidth_16bit = 0;
  // Bytes/s per direction a reduce-scatter and an all-gather reach within a host (0: the
  // intra-host link's, which is the all-reduce's). Open MPI on one host reduce-scatters at
  // about a quarter of its all-reduce rate, and all-gathers faster: measured on CPUs.
  double reduce_scatter_link = 0;
  double all_gather_link = 0;

  // Peak FLOP/s for a computation in `dtype` (16-bit floats on matrix units, else f32).
  double peak_flops(DType dtype) const;
  // Bytes/s of a memory-bound kernel computing in `dtype`.
  double bandwidth(DType dtype) const {
    return dtype_size(dtype) == 2 && memory_bandwidth_16bit > 0 ? memory_bandwidth_16bit
                                                                : memory_bandwidth;
  }
};

// The catalogue, and one entry by name (case-insensitive); throws listing the names.
const std::vector<DeviceProfile>& device_catalogue();
const DeviceProfile& device_profile(const std::string& name);
// The entry of a device its driver names `model` ("NVIDIA H100 80GB HBM3", "NVIDIA
// A100-SXM4-40GB", "AMD Instinct MI250X"); null when the catalogue has no such device.
const DeviceProfile* device_profile_of_model(const std::string& model);

}  // namespace solo::planner
