#include "op_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "solo/autograd/autograd.h"
#include "solo/backend/backend.h"
#include "solo/comm/communicator.h"
#include "solo/core/error.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"

namespace solo::test {

using ir::ValueId;

HostTensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  HostTensor t{{shape, dtype}, std::vector<double>(static_cast<size_t>(shape.numel()))};
  for (double& v : t.values) v = dist(rng);
  if (is_integral(dtype))
    for (double& v : t.values) v = std::floor(v);
  return t;
}

HostTensor int_tensor(const Shape& shape, DType dtype, const std::vector<int64_t>& values) {
  EXPECT_EQ(static_cast<int64_t>(values.size()), shape.numel());
  return HostTensor{{shape, dtype}, std::vector<double>(values.begin(), values.end())};
}

HostTensor float_tensor(const Shape& shape, DType dtype, const std::vector<double>& values) {
  EXPECT_EQ(static_cast<int64_t>(values.size()), shape.numel());
  return HostTensor{{shape, dtype}, values};
}

HostTensor with_dtype(const HostTensor& t, DType dtype) {
  HostTensor r = t;
  if (is_floating(t.type.dtype)) r.type.dtype = dtype;
  return r;
}

namespace {

std::vector<unsigned char> to_bytes(const HostTensor& t) {
  std::vector<unsigned char> bytes(t.type.bytes());
  for (size_t i = 0; i < t.values.size(); ++i) {
    const double v = t.values[i];
    void* p = bytes.data() + i * dtype_size(t.type.dtype);
    switch (t.type.dtype) {
      case DType::F32:
        *static_cast<float*>(p) = static_cast<float>(v);
        break;
      case DType::F64:
        *static_cast<double*>(p) = v;
        break;
      case DType::BF16:
        *static_cast<bf16*>(p) = f32_to_bf16(static_cast<float>(v));
        break;
      case DType::F16:
        *static_cast<f16*>(p) = f32_to_f16(static_cast<float>(v));
        break;
      case DType::I32:
        *static_cast<int32_t*>(p) = static_cast<int32_t>(v);
        break;
      case DType::I64:
        *static_cast<int64_t*>(p) = static_cast<int64_t>(v);
        break;
      case DType::Bool:
        *static_cast<uint8_t*>(p) = v != 0.0;
        break;
    }
  }
  return bytes;
}

HostTensor from_bytes(const ir::TensorType& type, const void* data) {
  HostTensor t{type, std::vector<double>(static_cast<size_t>(type.shape.numel()))};
  for (size_t i = 0; i < t.values.size(); ++i) {
    const void* p = static_cast<const char*>(data) + i * dtype_size(type.dtype);
    switch (type.dtype) {
      case DType::F32:
        t.values[i] = *static_cast<const float*>(p);
        break;
      case DType::F64:
        t.values[i] = *static_cast<const double*>(p);
        break;
      case DType::BF16:
        t.values[i] = bf16_to_f32(*static_cast<const bf16*>(p));
        break;
      case DType::F16:
        t.values[i] = f16_to_f32(*static_cast<const f16*>(p));
        break;
      case DType::I32:
        t.values[i] = *static_cast<const int32_t*>(p);
        break;
      case DType::I64:
        t.values[i] = static_cast<double>(*static_cast<const int64_t*>(p));
        break;
      case DType::Bool:
        t.values[i] = *static_cast<const uint8_t*>(p);
        break;
    }
  }
  return t;
}

// Adds an input bound to host data; used by graph extensions (e.g. loss weights).
using AddInput = std::function<ValueId(const HostTensor&)>;
using Extension = std::function<std::vector<ValueId>(ir::Graph&, const std::vector<ValueId>& in,
                                                     const std::vector<ValueId>& outs,
                                                     const AddInput& add_input)>;

// A rank of a group that only says who it is: a graph of rank-dependent kernels needs no
// more, and a collective reaching it is a test error.
class RankOnlyCommunicator final : public comm::Communicator {
 public:
  RankOnlyCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "rank-only"; }
  void all_reduce_sum(void*, size_t, DType) override { fail(); }
  void reduce_scatter_sum(const void*, void*, size_t, DType) override { fail(); }
  void all_gather(const void*, void*, size_t, DType) override { fail(); }
  void broadcast(void*, size_t, int) override { fail(); }
  void send(const void*, size_t, int, int) override { fail(); }
  void recv(void*, size_t, int, int) override { fail(); }
  void barrier() override { fail(); }
  std::unique_ptr<Communicator> split(int, int) override {
    fail();
    return nullptr;
  }

 private:
  [[noreturn]] static void fail() { SOLO_FAIL("a rank-only test communicator runs no collective"); }
  int rank_, size_;
};

// Builds inputs + graph (+ extension), runs it (with `groups` as the executor's
// communicators), converts the outputs back to host tensors.
std::vector<HostTensor> run_built(const std::string& backend_name,
                                  const std::vector<HostTensor>& inputs, const Builder& build,
                                  const Extension& extend,
                                  std::vector<comm::Communicator*> groups = {nullptr}) {
  auto backend = make_backend(backend_name);
  ir::Graph g;
  std::vector<std::unique_ptr<Storage>> device;
  std::unordered_map<ValueId, const void*> bound;
  AddInput add_input = [&](const HostTensor& t) {
    const ValueId v = g.input(t.type, "in" + std::to_string(device.size()));
    const std::vector<unsigned char> bytes = to_bytes(t);
    device.push_back(std::make_unique<Storage>(*backend, bytes.size()));
    backend->copy_from_host(device.back()->data(), bytes.data(), bytes.size());
    bound[v] = device.back()->data();
    return v;
  };
  std::vector<ValueId> in_values;
  for (const HostTensor& t : inputs) in_values.push_back(add_input(t));
  std::vector<ValueId> outs = build(g, in_values);
  if (extend) outs = extend(g, in_values, outs, add_input);
  runtime::Executor exec(*backend, nullptr, std::move(groups));
  const runtime::MemoryPlan plan = runtime::plan_memory(g, outs);
  runtime::check_memory_plan(g, plan);
  runtime::RunResult r = exec.run(g, plan, bound);
  std::vector<HostTensor> result;
  for (ValueId v : outs) {
    const auto k = static_cast<size_t>(std::find(plan.outputs.begin(), plan.outputs.end(), v) -
                                       plan.outputs.begin());
    std::vector<unsigned char> bytes(g.type(v).bytes());
    backend->copy_to_host(bytes.data(), r.outputs[k]->data(), bytes.size());
    result.push_back(from_bytes(g.type(v), bytes.data()));
  }
  return result;
}

void expect_close(const std::vector<HostTensor>& actual, const std::vector<HostTensor>& expected,
                  double rtol, double atol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t k = 0; k < actual.size(); ++k) {
    ASSERT_EQ(actual[k].type.shape, expected[k].type.shape) << what << " output " << k;
    int reported = 0;
    for (size_t i = 0; i < actual[k].values.size(); ++i) {
      const double a = actual[k].values[i], e = expected[k].values[i];
      const bool ok = (std::isnan(a) && std::isnan(e)) || (std::isinf(e) && a == e) ||
                      std::abs(a - e) <= atol + rtol * std::abs(e);
      if (!ok && reported++ < 5)
        ADD_FAILURE() << what << ": output " << k << " element " << i << ": got " << a
                      << ", expected " << e << " (rtol " << rtol << ", atol " << atol << ")";
    }
  }
}

// loss = sum_k sum(out_k * r_k) over the float outputs, r_k fixed random inputs.
ValueId weighted_loss(ir::Graph& g, const std::vector<ValueId>& outs, const AddInput& add_input) {
  ValueId loss = ir::kNoValue;
  uint64_t seed = 1234;
  for (ValueId o : outs) {
    if (!is_floating(g.dtype(o))) continue;
    const ValueId r = add_input(random_tensor(g.shape(o), g.dtype(o), seed++));
    const ValueId term = ir::sum(g, ir::mul(g, o, r));
    loss = loss == ir::kNoValue ? term : ir::add(g, loss, term);
  }
  EXPECT_NE(loss, ir::kNoValue) << "the op under test has no float output";
  return loss;
}

// Extension returning the gradients of weighted_loss w.r.t. the inputs listed in wrt.
Extension gradient_extension(const std::vector<int>& wrt) {
  return [wrt](ir::Graph& g, const std::vector<ValueId>& in, const std::vector<ValueId>& outs,
               const AddInput& add_input) {
    const ValueId loss = weighted_loss(g, outs, add_input);
    std::vector<ValueId> targets;
    for (int i : wrt) targets.push_back(in[static_cast<size_t>(i)]);
    std::vector<ValueId> grads = autograd::gradients(g, loss, targets);
    for (size_t i = 0; i < grads.size(); ++i)
      if (grads[i] == ir::kNoValue) {  // no path: the gradient is zero
        ADD_FAILURE() << "input " << wrt[i] << " has no gradient path to the outputs";
        grads[i] = ir::full(g, g.shape(targets[i]), g.dtype(targets[i]), 0.0);
      }
    return grads;
  };
}

}  // namespace

bool backend_available(const std::string& backend) {
  try {
    make_backend(backend);
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::vector<HostTensor> run_graph(const std::string& backend, const std::vector<HostTensor>& inputs,
                                  const Builder& build) {
  return run_built(backend, inputs, build, nullptr);
}

std::vector<HostTensor> run_graph_as_rank(const std::string& backend,
                                          const std::vector<HostTensor>& inputs,
                                          const Builder& build, int rank, int ranks) {
  RankOnlyCommunicator tp(rank, ranks);
  return run_built(backend, inputs, build, nullptr, {nullptr, &tp});
}

void expect_matches_reference(const std::string& backend, const std::vector<HostTensor>& inputs,
                              const Builder& build, double rtol, double atol) {
  const auto expected = run_graph("reference", inputs, build);
  const auto actual = run_graph(backend, inputs, build);
  expect_close(actual, expected, rtol, atol, backend + " vs reference");
}

void expect_values(const std::vector<HostTensor>& actual,
                   const std::vector<std::vector<double>>& expected, double rtol, double atol) {
  std::vector<HostTensor> e;
  for (size_t k = 0; k < expected.size(); ++k)
    e.push_back({k < actual.size() ? actual[k].type : ir::TensorType{}, expected[k]});
  expect_close(actual, e, rtol, atol, "hand-computed values");
}

void expect_gradients_match_finite_differences(const std::vector<HostTensor>& inputs,
                                               const Builder& build, const std::vector<int>& wrt,
                                               double rtol, double atol, double eps) {
  std::vector<HostTensor> in64;
  for (const HostTensor& t : inputs) in64.push_back(with_dtype(t, DType::F64));
  const std::vector<HostTensor> analytic =
      run_built("reference", in64, build, gradient_extension(wrt));
  Extension loss_only = [](ir::Graph& g, const std::vector<ValueId>&,
                           const std::vector<ValueId>& outs, const AddInput& add_input) {
    return std::vector<ValueId>{weighted_loss(g, outs, add_input)};
  };
  std::vector<HostTensor> numeric;
  for (int i : wrt) {
    HostTensor fd = in64[static_cast<size_t>(i)];
    for (size_t j = 0; j < fd.values.size(); ++j) {
      std::vector<HostTensor> plus = in64, minus = in64;
      plus[static_cast<size_t>(i)].values[j] += eps;
      minus[static_cast<size_t>(i)].values[j] -= eps;
      const double lp = run_built("reference", plus, build, loss_only)[0].values[0];
      const double lm = run_built("reference", minus, build, loss_only)[0].values[0];
      fd.values[j] = (lp - lm) / (2 * eps);
    }
    numeric.push_back(fd);
  }
  expect_close(analytic, numeric, rtol, atol, "autograd vs finite differences");
}

void expect_gradients_match_reference(const std::string& backend,
                                      const std::vector<HostTensor>& inputs, const Builder& build,
                                      const std::vector<int>& wrt, double rtol, double atol) {
  const auto expected = run_built("reference", inputs, build, gradient_extension(wrt));
  const auto actual = run_built(backend, inputs, build, gradient_extension(wrt));
  expect_close(actual, expected, rtol, atol, backend + " gradients vs reference");
}

}  // namespace solo::test
