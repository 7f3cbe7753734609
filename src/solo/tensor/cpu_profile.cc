#include "solo/tensor/cpu_profile.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/core/user_dirs.h"
#include "solo/core/version.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"
#include "solo/runtime/memory_plan.h"

namespace solo {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The fastest of `reps` runs of g (its inputs zeros), in seconds.
double time_graph(Backend& backend, const ir::Graph& g, ir::ValueId out, int reps) {
  const runtime::MemoryPlan plan = runtime::plan_memory(g, {out}, {}, false);
  std::vector<std::unique_ptr<Storage>> held;
  std::unordered_map<ir::ValueId, const void*> bound;
  for (ir::NodeId n = 0; n < g.num_nodes(); ++n) {
    if (g.node(n).op != OpKind::Input) continue;
    const ir::ValueId v = g.node(n).outputs[0];
    const std::vector<unsigned char> zeros(g.type(v).bytes(), 0);
    held.push_back(std::make_unique<Storage>(backend, zeros.size()));
    backend.copy_from_host(held.back()->data(), zeros.data(), zeros.size());
    bound[v] = held.back()->data();
  }
  runtime::Executor executor(backend);
  executor.run(g, plan, bound);  // warm: first-touch pages, thread pools
  backend.synchronize();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    executor.run(g, plan, bound);
    backend.synchronize();
    best = std::min(best, seconds_since(start));
  }
  return best;
}

// FLOP/s of [m, k] x [k, n] GEMMs in `dtype`, the mean over three shapes of a transformer
// step's sizes.
double gemm_rate(Backend& backend, DType dtype, int64_t scale) {
  double sum = 0;
  const int64_t shapes[3][3] = {
      {scale, scale, scale}, {2 * scale, scale, scale}, {scale, 2 * scale, scale}};
  for (const auto& s : shapes) {
    ir::Graph g;
    const ir::ValueId a = g.input({Shape({s[0], s[1]}), dtype}, "a");
    const ir::ValueId b = g.input({Shape({s[1], s[2]}), dtype}, "b");
    const ir::ValueId c = ir::matmul(g, a, b);
    sum += 2.0 * static_cast<double>(s[0] * s[1] * s[2]) / time_graph(backend, g, c, 7);
  }
  return sum / 3;
}

planner::DeviceProfile base_profile() {
  planner::DeviceProfile p;
  p.name = "cpu (measured)";
  p.memory_bytes = 0;
  p.matrix_efficiency = p.memory_efficiency = p.link_efficiency = 1;  // rates as reached
  return p;
}

planner::DeviceProfile measure(Backend& backend, comm::Communicator* comm) {
  planner::DeviceProfile p = base_profile();
  // Keep the calibration within a device memory limit (tests give devices a few MiB).
  const size_t limit = backend.memory_limit();
  const int64_t scale = limit != 0 && limit < (size_t{64} << 20) ? 128 : 512;
  p.vector_flops_32bit = gemm_rate(backend, DType::F32, scale);
  p.matrix_flops_16bit = gemm_rate(backend, DType::BF16, scale);
  {  // bandwidth: c = a + b, three arrays of n elements, in f32 and in bf16
    const int64_t n = limit != 0
                          ? std::min<int64_t>(int64_t{1} << 22, static_cast<int64_t>(limit / 32))
                          : int64_t{1} << 22;
    for (DType dtype : {DType::F32, DType::BF16}) {
      ir::Graph g;
      const ir::ValueId a = g.input({Shape({n}), dtype}, "a");
      const ir::ValueId b = g.input({Shape({n}), dtype}, "b");
      const ir::ValueId c = ir::add(g, a, b);
      const double rate = 3.0 * static_cast<double>(n * static_cast<int64_t>(dtype_size(dtype))) /
                          time_graph(backend, g, c, 9);
      (dtype == DType::F32 ? p.memory_bandwidth : p.memory_bandwidth_16bit) = rate;
    }
  }
  {  // a kernel's launch: a chain of 64 one-element kernels
    ir::Graph g;
    ir::ValueId x = g.input({Shape({1}), DType::F32}, "x");
    for (int i = 0; i < 64; ++i) x = ir::add_scalar(g, x, 1.0);
    p.kernel_launch_s = time_graph(backend, g, x, 5) / 64;
  }
  p.intra_host_link = p.memory_bandwidth / 2;  // one rank: no link; a copy's rate
  p.inter_host_link = p.intra_host_link / 10;
  p.collective_latency_s = 0;
  if (comm != nullptr && comm->size() > 1) {  // every rank takes part
    std::vector<float> one(2, 0.f);
    constexpr int kReps = 20;
    comm->all_reduce_sum(one.data(), one.size(), DType::F32);
    auto start = Clock::now();
    for (int r = 0; r < kReps; ++r) comm->all_reduce_sum(one.data(), one.size(), DType::F32);
    p.collective_latency_s = seconds_since(start) / kReps;
    // 16 MiB, the size of a gradient bucket's collectives; each kind at its own rate (Open
    // MPI's differ by up to 4x per byte sent).
    const double n = comm->size();
    const size_t count = size_t{1} << 22;
    std::vector<float> big(count, 0.f), block(count / comm->size(), 0.f);
    auto rate = [&](double bytes_sent, auto&& collective) {
      collective();  // warm: buffers touched, the transport's first-use set-up
      const auto from = Clock::now();
      for (int r = 0; r < 3; ++r) collective();
      const double each = std::max(seconds_since(from) / 3 - p.collective_latency_s, 1e-9);
      return bytes_sent / each;
    };
    const double bytes = static_cast<double>(count * 4);
    p.intra_host_link =
        rate(2 * (n - 1) / n * bytes, [&] { comm->all_reduce_sum(big.data(), count, DType::F32); });
    p.reduce_scatter_link = rate((n - 1) / n * bytes, [&] {
      comm->reduce_scatter_sum(big.data(), block.data(), block.size(), DType::F32);
    });
    p.all_gather_link = rate((n - 1) / n * bytes, [&] {
      comm->all_gather(block.data(), big.data(), block.size(), DType::F32);
    });
    p.inter_host_link = p.intra_host_link / 10;  // no second host to measure here
  }
  return p;
}

// The profile's figures in a fixed order (broadcast between ranks, and the cache file).
constexpr const char* kFields[] = {
    "matrix_flops_16bit",  "vector_flops_32bit", "memory_bandwidth", "memory_bandwidth_16bit",
    "intra_host_link",     "inter_host_link",    "kernel_launch_s",  "collective_latency_s",
    "reduce_scatter_link", "all_gather_link"};
std::vector<double*> fields(planner::DeviceProfile& p) {
  return {&p.matrix_flops_16bit,     &p.vector_flops_32bit,   &p.memory_bandwidth,
          &p.memory_bandwidth_16bit, &p.intra_host_link,      &p.inter_host_link,
          &p.kernel_launch_s,        &p.collective_latency_s, &p.reduce_scatter_link,
          &p.all_gather_link};
}

nlohmann::json to_json(planner::DeviceProfile p, double scaled_by) {
  nlohmann::json j = {{"solo_version", kVersion}, {"scaled_by", scaled_by}};
  const std::vector<double*> f = fields(p);
  for (size_t i = 0; i < f.size(); ++i) j[kFields[i]] = *f[i];
  return j;
}

// The cached profile, or false when there is none for this version (or it is unreadable: it
// is then measured again and rewritten).
bool read_cached(const std::string& path, planner::DeviceProfile& p) {
  std::ifstream in(path);
  if (!in) return false;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.at("solo_version").get<std::string>() != kVersion) return false;
    const std::vector<double*> f = fields(p);
    for (size_t i = 0; i < f.size(); ++i) {
      *f[i] = j.at(kFields[i]).get<double>();
      if (!std::isfinite(*f[i]) || *f[i] < 0) return false;
    }
  } catch (const std::exception&) {
    return false;
  }
  return p.vector_flops_32bit > 0 && p.matrix_flops_16bit > 0 && p.memory_bandwidth > 0;
}

}  // namespace

std::string cpu_profile_path(int ranks) {
  return cpu_profile_path(ranks, omp_get_max_threads());
}

std::string cpu_profile_path(int ranks, int threads) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::ostringstream name;
  name << user_cache_dir() << "/profiles/cpu-" << host << "-ranks" << ranks << "-threads" << threads
       << "-v" << kVersion << ".json";
  return name.str();
}

std::optional<planner::DeviceProfile> cached_cpu_profile(int ranks, int threads) {
  planner::DeviceProfile p = base_profile();
  if (!read_cached(cpu_profile_path(ranks, threads), p)) return std::nullopt;
  return p;
}

planner::DeviceProfile cpu_profile(Backend& backend, comm::Communicator* comm) {
  const int ranks = comm ? comm->size() : 1;
  const bool first = comm == nullptr || comm->rank() == 0;
  const std::string path = cpu_profile_path(ranks);
  planner::DeviceProfile p = base_profile();
  // Rank 0 decides whether to measure; every rank then measures together (the all-reduce
  // needs all of them) or none does.
  double cached = first && read_cached(path, p) ? 1 : 0;
  if (comm && ranks > 1) comm->broadcast(&cached, sizeof cached, 0);
  if (cached == 0) {
    p = measure(backend, comm);
    if (first) {
      std::filesystem::create_directories(std::filesystem::path(path).parent_path());
      write_file_atomic(path, to_json(p, 1.0).dump(2) + "\n");
    }
  }
  std::vector<double*> f = fields(p);
  std::vector<double> values;
  for (double* v : f) values.push_back(*v);
  if (comm && ranks > 1) comm->broadcast(values.data(), values.size() * sizeof(double), 0);
  for (size_t i = 0; i < f.size(); ++i) *f[i] = values[i];
  backend.reset_peak();  // the calibration's buffers are gone
  return p;
}

bool recalibrate_cpu_profile(const planner::DeviceProfile& profile, int ranks, double measured_s,
                             double predicted_s) {
  if (predicted_s <= 0 || measured_s <= 0) return false;
  if (std::abs(predicted_s / measured_s - 1) <= 0.2) return false;  // the error as printed
  const double factor = measured_s / predicted_s;
  planner::DeviceProfile p = profile;
  p.matrix_flops_16bit /= factor;
  p.vector_flops_32bit /= factor;
  p.memory_bandwidth /= factor;
  p.memory_bandwidth_16bit /= factor;
  p.intra_host_link /= factor;
  p.inter_host_link /= factor;
  p.reduce_scatter_link /= factor;
  p.all_gather_link /= factor;
  p.kernel_launch_s *= factor;
  p.collective_latency_s *= factor;
  const std::string path = cpu_profile_path(ranks);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  write_file_atomic(path, to_json(p, factor).dump(2) + "\n");
  return true;
}

}  // namespace solo
