// Op test helpers: run a small graph on a backend from host data, compare a backend with
// the reference backend, and check gradients against central finite differences.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "solo/ir/graph.h"

namespace solo::test {

// A host tensor; values are held as double and converted to `type.dtype` when bound.
struct HostTensor {
  ir::TensorType type;
  std::vector<double> values;
};

// Uniform values in [lo, hi), deterministic in seed.
HostTensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double lo = -1.0,
                         double hi = 1.0);
HostTensor int_tensor(const Shape& shape, DType dtype, const std::vector<int64_t>& values);
HostTensor float_tensor(const Shape& shape, DType dtype, const std::vector<double>& values);
// The same tensor with floating values re-typed (e.g. to F64 for gradient checks).
HostTensor with_dtype(const HostTensor& t, DType dtype);

// Builds the graph under test from its input values; returns the values to check.
using Builder =
    std::function<std::vector<ir::ValueId>(ir::Graph& g, const std::vector<ir::ValueId>& in)>;

// True when the named backend can be created here (e.g. "cuda" needs a device); tests of a
// backend that is not available skip.
bool backend_available(const std::string& backend);

// Runs the built graph on the named backend; returns the outputs as host tensors.
std::vector<HostTensor> run_graph(const std::string& backend, const std::vector<HostTensor>& inputs,
                                  const Builder& build);

// The same as rank `rank` of `ranks` in communicator group 1 (tensor parallelism's): the
// executor is given a stand-in communicator that knows its rank and size and runs no
// collective, so rank-dependent kernels (OpInfo::group_rank) read this rank.
std::vector<HostTensor> run_graph_as_rank(const std::string& backend,
                                          const std::vector<HostTensor>& inputs,
                                          const Builder& build, int rank, int ranks);

// Every output of `backend` within atol + rtol * |reference| of the reference backend.
void expect_matches_reference(const std::string& backend, const std::vector<HostTensor>& inputs,
                              const Builder& build, double rtol, double atol);

// Outputs equal `expected` element-wise within atol + rtol * |expected| (hand-computed
// values, independent of any backend).
void expect_values(const std::vector<HostTensor>& actual,
                   const std::vector<std::vector<double>>& expected, double rtol, double atol);

// Gradient check on the reference backend in f64: loss = sum_k sum(out_k * r_k) with fixed
// random r_k over the float outputs; for each input index in `wrt`, the autograd gradient
// must match central differences (step eps) within atol + rtol * |fd|. Float inputs are
// converted to f64; integer inputs are kept.
void expect_gradients_match_finite_differences(const std::vector<HostTensor>& inputs,
                                               const Builder& build, const std::vector<int>& wrt,
                                               double rtol = 1e-6, double atol = 1e-8,
                                               double eps = 1e-6);

// The autograd gradients of the loss above w.r.t. `wrt` computed on `backend` match the
// reference backend (checks each backend's backward kernels), in the inputs' own dtype.
void expect_gradients_match_reference(const std::string& backend,
                                      const std::vector<HostTensor>& inputs, const Builder& build,
                                      const std::vector<int>& wrt, double rtol, double atol);

}  // namespace solo::test
