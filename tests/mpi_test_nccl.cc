// The NCCL communicator on device buffers. Runs as one process (bootstrapped over the local
// communicator: no MPI needed) or under mpirun with one GPU per rank (bootstrapped over MPI).
// Inputs are functions of rank and index and expectations are closed forms, so every rank
// checks its own result. Also: split into groups, collectives are ordered after the compute
// stream's queued work and before its later work without the host waiting, and the executor's
// AllReduce runs on device buffers through it. Every test skips without a GPU, or with more ranks
// on a host than GPUs (NCCL refuses two ranks on one GPU).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "solo/autograd/autograd.h"
#include "solo/backend/cuda/cuda_backend.h"
#include "solo/comm/communicator.h"
#include "solo/comm/nccl/nccl_communicator.h"
#include "solo/core/error.h"
#include "solo/core/half.h"
#include "solo/ir/ops.h"
#include "solo/runtime/executor.h"
#include "test_support.h"

namespace solo::comm {
namespace {

using test::dtype_of;
using test::error_of;

// What every test uses; made once in main because creating an NCCL communicator is collective.
struct World {
  std::unique_ptr<Communicator> bootstrap;  // MPI under mpirun, local otherwise
  std::unique_ptr<CudaBackend> backend;     // its stream is the compute stream
  std::unique_ptr<Communicator> nccl;
  std::string skip;  // why every test skips (empty: they run)
};
World* world = nullptr;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

Communicator& comm() {
  return *world->nccl;
}
CudaBackend& backend() {
  return *world->backend;
}
cudaStream_t compute() {
  return static_cast<cudaStream_t>(backend().stream());
}

class Nccl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!world->skip.empty()) GTEST_SKIP() << world->skip;
  }
};

// A device buffer of n elements of T; uploads and downloads go through the compute stream.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n), p_(world->backend->allocate(bytes())) {}
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    world->backend->copy_from_host(p_, host.data(), bytes());
  }
  ~DeviceBuffer() { world->backend->deallocate(p_, bytes()); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* data() const { return static_cast<T*>(p_); }
  size_t bytes() const { return n_ * sizeof(T); }
  // Synchronizes the compute stream, which waits for the collectives queued before.
  std::vector<T> download() const {
    std::vector<T> host(n_);
    world->backend->copy_to_host(host.data(), p_, bytes());
    return host;
  }

 private:
  size_t n_;
  void* p_;
};

// Element i on rank r is r*1000 + i: the sum is 1000*n(n-1)/2 + n*i, exact in every type here.
template <class T>
void check_all_reduce_sum(size_t count) {
  const int r = comm().rank(), n = comm().size();
  std::vector<T> host(count);
  for (size_t i = 0; i < count; ++i) host[i] = static_cast<T>(r * 1000 + static_cast<int64_t>(i));
  DeviceBuffer<T> buf(host);
  comm().all_reduce_sum(buf.data(), count, dtype_of<T>());
  const std::vector<T> got = buf.download();
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i)
    if (got[i] != static_cast<T>(int64_t{1000} * n * (n - 1) / 2 + int64_t{n} * i)) ++wrong;
  EXPECT_EQ(wrong, 0u) << dtype_name(dtype_of<T>()) << ", count " << count << ", rank " << r
                       << ", got[0] " << got[0];
}

TEST_F(Nccl, RanksMatchTheBootstrap) {
  EXPECT_EQ(comm().rank(), world->bootstrap->rank());
  EXPECT_EQ(comm().size(), world->bootstrap->size());
  EXPECT_STREQ(comm().name(), "nccl");
  EXPECT_TRUE(comm().device_memory());
  EXPECT_TRUE(nccl_available());
}

TEST_F(Nccl, AllReduceSumEveryDType) {
  for (size_t count : {size_t{1}, size_t{100003}}) {
    check_all_reduce_sum<float>(count);
    check_all_reduce_sum<double>(count);
    check_all_reduce_sum<int32_t>(count);
    check_all_reduce_sum<int64_t>(count);
  }
}

// A bucket of tensors as one group (out of place, mixed sizes, an empty one): each is the
// closed-form mean of r*1000 + i, as if reduced alone.
TEST_F(Nccl, GroupedAllReduceAveragesEveryTensor) {
  const int r = comm().rank(), n = comm().size();
  const std::vector<size_t> counts = {1, 0, 4099, 65536};
  std::vector<std::unique_ptr<DeviceBuffer<float>>> send, recv;
  std::vector<ReduceBuffer> buffers;
  for (size_t count : counts) {
    std::vector<float> host(count);
    for (size_t i = 0; i < count; ++i) host[i] = static_cast<float>(r * 1000 + static_cast<int>(i));
    send.push_back(std::make_unique<DeviceBuffer<float>>(host));
    recv.push_back(std::make_unique<DeviceBuffer<float>>(count));
    buffers.push_back({send.back()->data(), recv.back()->data(), count, DType::F32});
  }
  comm().all_reduce_group(buffers, /*average=*/true);
  for (size_t k = 0; k < counts.size(); ++k) {
    const std::vector<float> got = recv[k]->download();
    size_t wrong = 0;
    for (size_t i = 0; i < counts[k]; ++i) {
      const double want = 500.0 * (n - 1) + static_cast<double>(i);  // ncclAvg may scale by 1/n
      wrong += std::abs(got[i] - want) > 1e-6 * want + 1e-6;
    }
    EXPECT_EQ(wrong, 0u) << "tensor " << k << ", rank " << r;
  }
}

// Mean of r*1000 + i over the ranks: 500*(n-1) + i.
template <class T>
void check_average(size_t count) {
  const int r = comm().rank(), n = comm().size();
  std::vector<T> host(count);
  for (size_t i = 0; i < count; ++i) host[i] = static_cast<T>(r * 1000 + static_cast<double>(i));
  DeviceBuffer<T> buf(host);
  comm().all_reduce(buf.data(), count, dtype_of<T>(), /*average=*/true);
  const std::vector<T> got = buf.download();
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    const double want = 500.0 * (n - 1) + static_cast<double>(i);
    if (std::abs(static_cast<double>(got[i]) - want) > 1e-6 * std::abs(want) + 1e-6) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << dtype_name(dtype_of<T>()) << ", rank " << r << ", got[1] " << got[1];
}

TEST_F(Nccl, AllReduceAverage) {
  check_average<float>(4099);
  check_average<double>(4099);
  // Rejected before any NCCL call, identically on every rank.
  DeviceBuffer<int32_t> ints(4);
  EXPECT_NE(error_of([&] {
              comm().all_reduce(ints.data(), 4, DType::I32, true);
            }).find("averaging needs a float dtype"),
            std::string::npos);
}

// Small integers are exact in bf16 and f16 (and so are their sums here, at most 4 * 16).
TEST_F(Nccl, HalfPrecisionSumsOfSmallIntegers) {
  const int r = comm().rank(), n = comm().size();
  constexpr size_t kCount = 1027;
  std::vector<bf16> b(kCount);
  std::vector<f16> h(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    const float v = static_cast<float>(r + 1 + static_cast<int>(i % 12));
    b[i] = f32_to_bf16(v);
    h[i] = f32_to_f16(v);
  }
  DeviceBuffer<bf16> db(b);
  DeviceBuffer<f16> dh(h);
  comm().all_reduce_sum(db.data(), kCount, DType::BF16);
  comm().all_reduce_sum(dh.data(), kCount, DType::F16);
  const auto gb = db.download();
  const auto gh = dh.download();
  size_t wrong = 0;
  for (size_t i = 0; i < kCount; ++i) {
    const float want = static_cast<float>(n * (n + 1) / 2 + n * static_cast<int>(i % 12));
    if (bf16_to_f32(gb[i]) != want || f16_to_f32(gh[i]) != want) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "rank " << r << ": bf16 " << bf16_to_f32(gb[0]) << ", f16 "
                       << f16_to_f32(gh[0]);
}

TEST_F(Nccl, BoolSumsAreRejected) {
  DeviceBuffer<uint8_t> flags(8);
  EXPECT_NE(error_of([&] {
              comm().all_reduce_sum(flags.data(), 8, DType::Bool);
            }).find("a sum of bool is not meaningful"),
            std::string::npos);
}

// Rank r's block q is r*1000 + q*100 + i; rank q receives 1000*n(n-1)/2 + n*(q*100 + i).
TEST_F(Nccl, ReduceScatterSum) {
  const int r = comm().rank(), n = comm().size();
  constexpr size_t kCount = 5003;
  std::vector<float> host(n * kCount);
  for (int q = 0; q < n; ++q)
    for (size_t i = 0; i < kCount; ++i)
      host[q * kCount + i] = static_cast<float>(r * 1000 + q * 100 + static_cast<int>(i));
  DeviceBuffer<float> send(host);
  DeviceBuffer<float> recv(kCount);
  comm().reduce_scatter_sum(send.data(), recv.data(), kCount, DType::F32);
  const auto got = recv.download();
  size_t wrong = 0;
  for (size_t i = 0; i < kCount; ++i)
    if (got[i] != static_cast<float>(1000 * n * (n - 1) / 2 + n * (r * 100 + static_cast<int>(i))))
      ++wrong;
  EXPECT_EQ(wrong, 0u) << "rank " << r << ", got[0] " << got[0];
}

// recv[q*count + i] = q*1000 + i, from separate buffers and in place (send is our slot).
TEST_F(Nccl, AllGather) {
  const int r = comm().rank(), n = comm().size();
  constexpr size_t kCount = 3001;
  std::vector<int32_t> mine(kCount), want(n * kCount);
  for (size_t i = 0; i < kCount; ++i) mine[i] = r * 1000 + static_cast<int32_t>(i);
  for (int q = 0; q < n; ++q)
    for (size_t i = 0; i < kCount; ++i) want[q * kCount + i] = q * 1000 + static_cast<int32_t>(i);

  DeviceBuffer<int32_t> send(mine);
  DeviceBuffer<int32_t> recv(n * kCount);
  comm().all_gather(send.data(), recv.data(), kCount, DType::I32);
  EXPECT_EQ(recv.download(), want) << "rank " << r;

  std::vector<int32_t> slots(n * kCount, -1);
  std::copy(mine.begin(), mine.end(), slots.begin() + r * kCount);
  DeviceBuffer<int32_t> inplace(slots);
  comm().all_gather(inplace.data() + r * kCount, inplace.data(), kCount, DType::I32);
  EXPECT_EQ(inplace.download(), want) << "rank " << r << " (in place)";
}

TEST_F(Nccl, BroadcastFromTheLastRank) {
  const int r = comm().rank(), n = comm().size();
  constexpr size_t kBytes = 10007;
  std::vector<uint8_t> host(kBytes), want(kBytes);
  for (size_t i = 0; i < kBytes; ++i) {
    host[i] = static_cast<uint8_t>((r * 31 + i) % 251);
    want[i] = static_cast<uint8_t>(((n - 1) * 31 + i) % 251);
  }
  DeviceBuffer<uint8_t> buf(host);
  comm().broadcast(buf.data(), kBytes, n - 1);
  EXPECT_EQ(buf.download(), want) << "rank " << r;
  EXPECT_NE(error_of([&] { comm().broadcast(buf.data(), kBytes, n); }).find("is not a rank"),
            std::string::npos);
}

// Pairs (0,1), (2,3): the even rank sends first, the odd one receives first.
TEST_F(Nccl, SendRecvBetweenPairs) {
  const int r = comm().rank(), n = comm().size();
  const int peer = r ^ 1;
  if (peer >= n) GTEST_SKIP() << "rank " << r << " has no partner in a " << n << "-rank job";
  constexpr size_t kCount = 2049;
  std::vector<int64_t> mine(kCount), theirs(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    mine[i] = (int64_t{r} << 32) | static_cast<int64_t>(i);
    theirs[i] = (int64_t{peer} << 32) | static_cast<int64_t>(i);
  }
  DeviceBuffer<int64_t> out(mine), in(kCount);
  if (r % 2 == 0) {
    comm().send(out.data(), out.bytes(), peer, 0);
    comm().recv(in.data(), in.bytes(), peer, 0);
  } else {
    comm().recv(in.data(), in.bytes(), peer, 0);
    comm().send(out.data(), out.bytes(), peer, 0);
  }
  EXPECT_EQ(in.download(), theirs) << "rank " << r;
}

// The collective must start after the copies queued on the compute stream before it (a long
// chain, then the input) and finish before the copy queued after it, with the host never
// waiting in between: the call returns while the chain still runs.
TEST_F(Nccl, OrderedWithTheComputeStreamWithoutHostWaits) {
  const int r = comm().rank(), n = comm().size();
  constexpr size_t kCount = 1 << 20;
  constexpr size_t kBusyBytes = size_t{512} << 20;
  constexpr int kBusyCopies = 40;  // ~40 GiB of device traffic: milliseconds on any GPU
  comm().barrier();                // every rank's earlier work is done; NCCL's connections are warm

  float* pinned_in = nullptr;
  float* pinned_out = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned_in, kCount * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&pinned_out, kCount * sizeof(float)), cudaSuccess);
  for (size_t i = 0; i < kCount; ++i) {
    pinned_in[i] = static_cast<float>(r * 1000 + static_cast<int>(i % 4096));
    pinned_out[i] = -1;
  }
  DeviceBuffer<char> busy_a(kBusyBytes), busy_b(kBusyBytes);
  DeviceBuffer<float> data(kCount), after(kCount);
  const size_t bytes = kCount * sizeof(float);
  // Stale values, so that a collective that ran early would sum these instead.
  ASSERT_EQ(cudaMemsetAsync(data.data(), 0, bytes, compute()), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(compute()), cudaSuccess);

  for (int k = 0; k < kBusyCopies; ++k)
    ASSERT_EQ(cudaMemcpyAsync(k % 2 ? busy_a.data() : busy_b.data(),
                              k % 2 ? busy_b.data() : busy_a.data(), kBusyBytes,
                              cudaMemcpyDeviceToDevice, compute()),
              cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(data.data(), pinned_in, bytes, cudaMemcpyHostToDevice, compute()),
            cudaSuccess);
  comm().all_reduce_sum(data.data(), kCount, DType::F32);
  const cudaError_t busy = cudaStreamQuery(compute());
  ASSERT_EQ(cudaMemcpyAsync(after.data(), data.data(), bytes, cudaMemcpyDeviceToDevice, compute()),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned_out, after.data(), bytes, cudaMemcpyDeviceToHost, compute()),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(compute()), cudaSuccess);  // the only wait

  EXPECT_EQ(busy, cudaErrorNotReady)
      << "all_reduce_sum returned only after the compute stream drained: it waited on the host";
  size_t wrong = 0;
  for (size_t i = 0; i < kCount; ++i)
    if (pinned_out[i] !=
        static_cast<float>(1000 * n * (n - 1) / 2 + n * static_cast<int>(i % 4096)))
      ++wrong;
  EXPECT_EQ(wrong, 0u) << "rank " << r << ": out[1] " << pinned_out[1];
  cudaFreeHost(pinned_in);
  cudaFreeHost(pinned_out);
}

TEST_F(Nccl, BarrierWaitsForQueuedCollectives) {
  const int r = comm().rank(), n = comm().size();
  std::vector<double> host(257, r + 1.0);
  DeviceBuffer<double> buf(host);
  comm().all_reduce_sum(buf.data(), host.size(), DType::F64);
  comm().barrier();
  // After the barrier the data is final without going through the compute stream.
  std::vector<double> got(host.size());
  ASSERT_EQ(cudaMemcpy(got.data(), buf.data(), buf.bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(got, std::vector<double>(host.size(), n * (n + 1) / 2.0)) << "rank " << r;
}

// Queues the sum over `group` of r*1000 + i (r this rank's rank in comm()) into a device
// buffer; the result is 1000 * (the sum of the members' ranks) + size * i.
std::unique_ptr<DeviceBuffer<float>> queue_group_sum(Communicator& group, size_t count) {
  std::vector<float> host(count);
  for (size_t i = 0; i < count; ++i)
    host[i] = static_cast<float>(comm().rank() * 1000 + static_cast<int>(i));
  auto buf = std::make_unique<DeviceBuffer<float>>(host);
  group.all_reduce_sum(buf->data(), count, DType::F32);
  return buf;
}

size_t wrong_group_sums(const DeviceBuffer<float>& buf, int group_size, int members_sum) {
  const std::vector<float> got = buf.download();
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    wrong += got[i] != static_cast<float>(1000 * members_sum + group_size * static_cast<int>(i));
  return wrong;
}

// Groups by parity (key r: group c is c, c + 2, ...) and all ranks reversed (key -r). Both
// groups' sums are queued before either is read: the sub-communicators run independently,
// each ordered with the compute stream. A negative color joins no group; the parent still
// works afterwards.
TEST_F(Nccl, SplitSumsWithinGroups) {
  const int r = comm().rank(), n = comm().size();
  const int c = r % 2, m = (n - c + 1) / 2;
  auto parity = comm().split(c, r);
  auto reversed = comm().split(0, -r);
  ASSERT_NE(parity, nullptr);
  ASSERT_NE(reversed, nullptr);
  EXPECT_STREQ(parity->name(), "nccl");
  EXPECT_TRUE(parity->device_memory());
  EXPECT_EQ(parity->size(), m);
  EXPECT_EQ(parity->rank(), r / 2);
  EXPECT_EQ(reversed->size(), n);
  EXPECT_EQ(reversed->rank(), n - 1 - r);

  constexpr size_t kCount = 4099;
  const auto by_parity = queue_group_sum(*parity, kCount);
  const auto by_all = queue_group_sum(*reversed, kCount);
  EXPECT_EQ(wrong_group_sums(*by_parity, m, m * c + m * (m - 1)), 0u) << "rank " << r;
  EXPECT_EQ(wrong_group_sums(*by_all, n, n * (n - 1) / 2), 0u) << "rank " << r;

  // Gathered in sub-rank order: the ranks reversed.
  const int32_t mine = r;
  DeviceBuffer<int32_t> send(std::vector<int32_t>{mine});
  DeviceBuffer<int32_t> gathered(n);
  reversed->all_gather(send.data(), gathered.data(), 1, DType::I32);
  std::vector<int32_t> want(n);
  for (int j = 0; j < n; ++j) want[j] = n - 1 - j;
  EXPECT_EQ(gathered.download(), want) << "rank " << r;

  auto first_only = comm().split(r == 0 ? 0 : Communicator::kNoGroup, 0);
  EXPECT_EQ(first_only == nullptr, r != 0);
  if (first_only) {
    EXPECT_EQ(first_only->size(), 1);
    EXPECT_EQ(wrong_group_sums(*queue_group_sum(*first_only, 7), 1, 0), 0u);
  }
  check_all_reduce_sum<float>(1001);
}

// The executor's AllReduce (average) on device buffers: the graph runs on the CUDA backend
// with the NCCL communicator, as a data-parallel step does.
TEST_F(Nccl, ExecutorAllReduceAverageOnDevice) {
  const int r = comm().rank(), n = comm().size();
  ir::Graph g;
  const ir::ValueId x = g.input({Shape{3, 1001}, DType::F32}, "x");
  const ir::ValueId y = ir::all_reduce(g, x, /*average=*/true);
  std::vector<float> host(3 * 1001);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(r * 1000 + int(i));
  DeviceBuffer<float> in(host);
  runtime::Executor executor(backend(), nullptr, &comm());
  runtime::RunResult result = executor.run(g, std::vector<ir::ValueId>{y}, {{x, in.data()}});
  std::vector<float> got(host.size());
  backend().copy_to_host(got.data(), result.outputs[0]->data(), got.size() * sizeof(float));
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double want = 500.0 * (n - 1) + static_cast<double>(i);
    if (std::abs(got[i] - want) > 1e-6 * want + 1e-6) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "rank " << r << ", got[1] " << got[1];
}

// Gather and reduce-scatter nodes on device buffers through NCCL, with their paired
// gradient: x [2, 3] = 100 r + i; y = allgather(x, axis 1) [2, 3n]; loss = sum over ranks q of
// sum(y * (q + 1)) gives dx = n(n+1)/2 at every element (a reduce-scatter of the ones-scaled
// gradients).
TEST_F(Nccl, ExecutorGatherAndScatterOnDevice) {
  const int r = comm().rank(), n = comm().size();
  ir::Graph g;
  const ir::ValueId x = g.input({Shape{2, 3}, DType::F32}, "x");
  const ir::ValueId w = g.input({Shape{}, DType::F32}, "w");
  const ir::ValueId y = ir::all_gather(g, x, n, /*axis=*/1);
  const ir::ValueId dx = autograd::gradients(g, ir::mul(g, ir::sum(g, y), w), {x})[0];
  std::vector<float> host(6);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(100 * r + int(i));
  DeviceBuffer<float> in(host), weight(std::vector<float>{static_cast<float>(r + 1)});
  runtime::Executor executor(backend(), nullptr, &comm());
  runtime::RunResult result =
      executor.run(g, std::vector<ir::ValueId>{y, dx}, {{x, in.data()}, {w, weight.data()}});
  std::vector<float> gathered(static_cast<size_t>(6 * n)), grad(6);
  backend().copy_to_host(gathered.data(), result.outputs[0]->data(), gathered.size() * 4);
  backend().copy_to_host(grad.data(), result.outputs[1]->data(), grad.size() * 4);
  size_t wrong = 0;
  for (int j = 0; j < 6 * n; ++j) {
    const int row = j / (3 * n), b = j % (3 * n) / 3, c = j % 3;
    wrong += gathered[static_cast<size_t>(j)] != static_cast<float>(100 * b + 3 * row + c);
  }
  for (float v : grad) wrong += v != static_cast<float>(n * (n + 1) / 2);
  EXPECT_EQ(wrong, 0u) << "rank " << r;
}

// Two gradient buckets overlapped with compute, as backward() builds them: the executor
// starts each AllReduce without making compute wait, and waits before the next bucket and
// before the first reader of a reduced value. Rank r holds x = r + 1 at every element:
//   a = 3x, r1 = sum(a) = 3 S; c = (x + 1) * 2; r2 = sum(c + 5) = 2 S + 7n;
//   out = r1 + r2 + c, with S = n(n+1)/2 the sum of x over ranks.
TEST_F(Nccl, ExecutorOverlapsBucketsWithCompute) {
  const int r = comm().rank(), n = comm().size();
  const int64_t count = 1 << 20;  // large enough to keep the comm stream busy for a while
  ir::Graph g;
  const ir::ValueId x = g.input({Shape{count}, DType::F32}, "x");
  const ir::ValueId a = ir::mul_scalar(g, x, 3.0);
  const ir::ValueId r1 = ir::all_reduce(g, a, /*average=*/false);
  const ir::ValueId c = ir::mul_scalar(g, ir::add_scalar(g, x, 1.0), 2.0);
  const ir::ValueId r2 = ir::all_reduce(g, ir::add_scalar(g, c, 5.0), false);
  const ir::ValueId out = ir::add(g, ir::add(g, r1, r2), c);
  const runtime::MemoryPlan plan = runtime::plan_memory(g, {out}, {}, comm().asynchronous());
  EXPECT_TRUE(plan.async_collectives);
  DeviceBuffer<float> in(std::vector<float>(static_cast<size_t>(count), r + 1.0f));
  runtime::Executor executor(backend(), nullptr, &comm());
  runtime::RunResult result = executor.run(g, plan, {{x, in.data()}});
  std::vector<float> got(static_cast<size_t>(count));
  backend().copy_to_host(got.data(), result.outputs[0]->data(), got.size() * sizeof(float));
  const float s = n * (n + 1) / 2.0f;
  const float want = 3 * s + (2 * s + 7.0f * n) + 2 * (r + 2.0f);
  size_t wrong = 0;
  for (float v : got) wrong += v != want;
  EXPECT_EQ(wrong, 0u) << "rank " << r << ", got[0] " << got[0] << ", want " << want;
}

// Why this process cannot run the tests, or "" when it can. Decided on every rank alike.
std::string skip_reason(Communicator& bootstrap, int local_size) {
  int devices = 0;
  std::string why;
  if (!cuda_device_available())
    why = "no CUDA device (these tests need one GPU per rank)";
  else if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < local_size)
    why = solo::detail::concat(local_size, " ranks on this host but ", devices,
                               " GPUs: NCCL needs a GPU per rank; run with fewer ranks (-np ",
                               devices, ")");
  int32_t cannot = why.empty() ? 0 : 1;
  bootstrap.all_reduce_sum(&cannot, 1, DType::I32);
  if (why.empty() && cannot > 0) why = "another rank cannot run the NCCL tests";
  return why;
}

}  // namespace
}  // namespace solo::comm

int main(int argc, char** argv) {
  using namespace solo::comm;
  ::testing::InitGoogleTest(&argc, argv);
  World w;
  world = &w;
  // One process needs no MPI: NCCL with one rank bootstraps over the local communicator.
  const bool mpi = launched_as_mpi_rank();
  w.bootstrap = mpi ? make_mpi_communicator() : make_local_communicator();
  const int local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  const int local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  w.skip = skip_reason(*w.bootstrap, local_size);
  int status = 0;
  if (w.skip.empty()) {
    // Every rank learns whether all have a device before any enters NCCL's init, where a rank
    // that failed alone would leave the others waiting.
    std::string error;
    try {
      w.backend = std::make_unique<solo::CudaBackend>(local_rank);
    } catch (const std::exception& e) {
      error = e.what();
    }
    int32_t failed = error.empty() ? 0 : 1;
    w.bootstrap->all_reduce_sum(&failed, 1, solo::DType::I32);
    if (failed > 0) {
      w.skip = "a rank has no usable GPU";
      status = 1;
      if (!error.empty())
        std::fprintf(stderr, "mpi_test_nccl: rank %d: %s\n", w.bootstrap->rank(), error.c_str());
    }
  }
  try {
    if (w.skip.empty()) {
      w.nccl = make_nccl_communicator(*w.bootstrap, local_rank, w.backend->stream());
    } else if (status == 0 && w.bootstrap->rank() == 0) {
      std::fprintf(stderr, "mpi_test_nccl: skipping every test: %s\n", w.skip.c_str());
    }
    status = RUN_ALL_TESTS() != 0 || status != 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_test_nccl: rank %d: %s\n", w.bootstrap->rank(), e.what());
    status = 1;
  }
  w.nccl.reset();  // before the backend whose stream it follows
  w.backend.reset();
  // Every rank exits non-zero when any rank failed, so mpirun and CTest see the failure.
  int32_t any = status;
  w.bootstrap->all_reduce_sum(&any, 1, solo::DType::I32);
  return any > 0 ? 1 : 0;
}
