// Collectives of the MPI communicator, run by CTest under 2, 3 and 4 ranks. Inputs are
// functions of the rank and index; expectations are closed forms (sums of arithmetic series),
// so every rank checks its own result independently. Each test makes its own communicator
// (a collective dup; every rank runs the same tests in the same order).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "mpi_test_support.h"
#include "solo/comm/comm_detail.h"
#include "solo/comm/communicator.h"
#include "solo/core/error.h"
#include "test_support.h"

namespace solo::comm {
namespace {

using test::dtype_of;
using test::error_of;

// Small enough that every buffer below spans several messages: exercises the chunked paths.
constexpr size_t kTinyCap = 64;

// Rank r contributes (r+1)*(i+1) at index i: the sum is (i+1) * n(n+1)/2, exact in every type.
template <class T>
void check_all_reduce(Communicator& comm, size_t count) {
  const int r = comm.rank(), n = comm.size();
  std::vector<T> data(count);
  for (size_t i = 0; i < count; ++i)
    data[i] = static_cast<T>((r + 1) * static_cast<int64_t>(i + 1));
  comm.all_reduce_sum(data.data(), count, dtype_of<T>());
  const int64_t ranks_sum = int64_t{n} * (n + 1) / 2;
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i)
    if (data[i] != static_cast<T>(static_cast<int64_t>(i + 1) * ranks_sum)) ++wrong;
  EXPECT_EQ(wrong, 0u) << "dtype " << dtype_name(dtype_of<T>()) << ", count " << count << ", rank "
                       << r << ", data[0] " << data[0];
}

TEST(MpiCommunicator, RanksAreTheWorld) {
  auto comm = make_mpi_communicator();
  int world_rank = -1, world_size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  EXPECT_EQ(comm->rank(), world_rank);
  EXPECT_EQ(comm->size(), world_size);
  EXPECT_GE(comm->size(), 2);
  EXPECT_STREQ(comm->name(), "mpi");
  EXPECT_TRUE(launched_as_mpi_rank());
}

TEST(MpiCommunicator, AllReduceSumEveryDType) {
  auto comm = make_mpi_communicator();
  for (size_t count : {size_t{1}, size_t{1000}, size_t{1001}}) {
    check_all_reduce<float>(*comm, count);
    check_all_reduce<double>(*comm, count);
    check_all_reduce<int32_t>(*comm, count);
    check_all_reduce<int64_t>(*comm, count);
  }
}

TEST(MpiCommunicator, AllReduceSumChunked) {
  auto comm = detail::make_mpi_communicator(kTinyCap);
  check_all_reduce<float>(*comm, 1001);
  check_all_reduce<double>(*comm, 1001);
  check_all_reduce<int32_t>(*comm, 17);
  check_all_reduce<int64_t>(*comm, 3);
}

TEST(MpiCommunicator, AllReduceSumLargeBuffer) {
  auto comm = make_mpi_communicator();
  const int r = comm->rank(), n = comm->size();
  const size_t count = 10'000'000;
  // (i % 1024 + 1) keeps every sum below 2^24, so f32 is exact.
  std::vector<float> data(count);
  for (size_t i = 0; i < count; ++i) data[i] = static_cast<float>((r + 1) * (i % 1024 + 1));
  comm->all_reduce_sum(data.data(), count, DType::F32);
  const float ranks_sum = static_cast<float>(n * (n + 1) / 2);
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i)
    if (data[i] != static_cast<float>(i % 1024 + 1) * ranks_sum) ++wrong;
  EXPECT_EQ(wrong, 0u) << "rank " << r;
}

// The host average (Communicator's default): the mean of r*1000 + i is 500*(n-1) + i.
TEST(MpiCommunicator, AllReduceAverage) {
  auto comm = make_mpi_communicator();
  const int r = comm->rank(), n = comm->size();
  std::vector<float> f(1001);
  std::vector<double> d(1001);
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = static_cast<float>(r * 1000 + static_cast<int>(i));
    d[i] = r * 1000 + static_cast<double>(i);
  }
  comm->all_reduce(f.data(), f.size(), DType::F32, /*average=*/true);
  comm->all_reduce(d.data(), d.size(), DType::F64, /*average=*/true);
  size_t wrong = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    const double want = 500.0 * (n - 1) + static_cast<double>(i);
    if (std::abs(f[i] - want) > 1e-6 * want + 1e-6 || std::abs(d[i] - want) > 1e-12 * want) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "rank " << r << ": f[1] " << f[1] << ", d[1] " << d[1];
  // Integers cannot be averaged; every rank refuses before summing.
  std::vector<int32_t> ints(3, r);
  EXPECT_NE(error_of([&] {
              comm->all_reduce(ints.data(), 3, DType::I32, true);
            }).find("averaging needs f32 or f64"),
            std::string::npos);
  EXPECT_EQ(ints, std::vector<int32_t>(3, r));
}

// From send into recv: send is left as it was, recv gets the sum (or mean); also chunked.
TEST(MpiCommunicator, AllReduceOutOfPlace) {
  for (size_t cap : {size_t{0}, kTinyCap}) {
    auto comm = cap ? detail::make_mpi_communicator(cap) : make_mpi_communicator();
    const int r = comm->rank(), n = comm->size();
    std::vector<int64_t> send(1001), recv(1001, -1);
    for (size_t i = 0; i < send.size(); ++i) send[i] = (r + 1) * static_cast<int64_t>(i + 1);
    const std::vector<int64_t> sent = send;
    comm->all_reduce(send.data(), recv.data(), send.size(), DType::I64, /*average=*/false);
    EXPECT_EQ(send, sent);
    size_t wrong = 0;
    for (size_t i = 0; i < recv.size(); ++i)
      wrong += recv[i] != static_cast<int64_t>(i + 1) * n * (n + 1) / 2;
    EXPECT_EQ(wrong, 0u) << "cap " << cap << ", rank " << r;
    std::vector<double> in(5, 2.0 * r), mean(5);
    comm->all_reduce(in.data(), mean.data(), in.size(), DType::F64, /*average=*/true);
    EXPECT_EQ(mean, std::vector<double>(5, n - 1.0)) << "rank " << r;  // mean of 2r = n - 1
  }
}

// Rank r sends r*1000 + j at index j of its size*count buffer; rank r receives
// sum_q (q*1000 + r*count + j) = 1000*n(n-1)/2 + n*(r*count + j).
template <class T>
void check_reduce_scatter(Communicator& comm, size_t count) {
  const int r = comm.rank(), n = comm.size();
  std::vector<T> send(n * count);
  for (size_t j = 0; j < send.size(); ++j)
    send[j] = static_cast<T>(r * 1000 + static_cast<int64_t>(j));
  std::vector<T> recv(count, static_cast<T>(-1));
  comm.reduce_scatter_sum(send.data(), recv.data(), count, dtype_of<T>());
  size_t wrong = 0;
  for (size_t j = 0; j < count; ++j) {
    const int64_t expected = int64_t{1000} * n * (n - 1) / 2 + int64_t{n} * (r * count + j);
    if (recv[j] != static_cast<T>(expected)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "dtype " << dtype_name(dtype_of<T>()) << ", count " << count << ", rank "
                       << r << ", recv[0] " << recv[0];
}

TEST(MpiCommunicator, ReduceScatterSum) {
  auto comm = make_mpi_communicator();
  for (size_t count : {size_t{1}, size_t{100}, size_t{257}}) {
    check_reduce_scatter<float>(*comm, count);
    check_reduce_scatter<double>(*comm, count);
    check_reduce_scatter<int32_t>(*comm, count);
    check_reduce_scatter<int64_t>(*comm, count);
  }
}

TEST(MpiCommunicator, ReduceScatterSumChunked) {
  auto comm = detail::make_mpi_communicator(kTinyCap);
  check_reduce_scatter<float>(*comm, 101);
  check_reduce_scatter<int64_t>(*comm, 37);
}

// recv[q*count + j] = q*100 + j.
template <class T>
void check_all_gather(Communicator& comm, size_t count, bool in_place) {
  const int r = comm.rank(), n = comm.size();
  std::vector<T> recv(n * count, static_cast<T>(-1));
  std::vector<T> send(count);
  for (size_t j = 0; j < count; ++j) send[j] = static_cast<T>(r * 100 + static_cast<int64_t>(j));
  if (in_place) {
    std::copy(send.begin(), send.end(), recv.begin() + r * count);
    comm.all_gather(recv.data() + r * count, recv.data(), count, dtype_of<T>());
  } else {
    comm.all_gather(send.data(), recv.data(), count, dtype_of<T>());
  }
  size_t wrong = 0;
  for (int q = 0; q < n; ++q)
    for (size_t j = 0; j < count; ++j)
      if (recv[q * count + j] != static_cast<T>(q * 100 + static_cast<int64_t>(j))) ++wrong;
  EXPECT_EQ(wrong, 0u) << "dtype " << dtype_name(dtype_of<T>()) << ", count " << count
                       << (in_place ? ", in place" : "") << ", rank " << r;
}

TEST(MpiCommunicator, AllGather) {
  auto comm = make_mpi_communicator();
  for (bool in_place : {false, true}) {
    check_all_gather<float>(*comm, 7, in_place);
    check_all_gather<double>(*comm, 1, in_place);
    check_all_gather<int32_t>(*comm, 50, in_place);
    check_all_gather<int64_t>(*comm, 13, in_place);
  }
}

TEST(MpiCommunicator, AllGatherChunked) {
  auto comm = detail::make_mpi_communicator(kTinyCap);
  check_all_gather<float>(*comm, 53, false);
  check_all_gather<int64_t>(*comm, 29, true);
}

// Half and bool data move as bits: gathering them is fine even though summing is not.
TEST(MpiCommunicator, AllGatherMovesHalfAndBoolBits) {
  auto comm = make_mpi_communicator();
  const int r = comm->rank(), n = comm->size();
  const uint16_t mine[2] = {static_cast<uint16_t>(0x3f80 + r), static_cast<uint16_t>(0xc000 | r)};
  std::vector<uint16_t> halfs(2 * n);
  comm->all_gather(mine, halfs.data(), 2, DType::BF16);
  const bool flag = r % 2 == 1;
  std::vector<uint8_t> flags(n, 7);
  comm->all_gather(&flag, flags.data(), 1, DType::Bool);
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(halfs[2 * q], 0x3f80 + q);
    EXPECT_EQ(halfs[2 * q + 1], 0xc000 | q);
    EXPECT_EQ(flags[q], q % 2 == 1 ? 1 : 0);
  }
}

void check_broadcast(Communicator& comm, int root, size_t bytes) {
  const int r = comm.rank();
  std::vector<uint8_t> data(bytes);
  for (size_t k = 0; k < bytes; ++k)
    data[k] = r == root ? static_cast<uint8_t>((root * 31 + k) & 0xff) : 0xee;
  comm.broadcast(data.data(), bytes, root);
  size_t wrong = 0;
  for (size_t k = 0; k < bytes; ++k)
    if (data[k] != static_cast<uint8_t>((root * 31 + k) & 0xff)) ++wrong;
  EXPECT_EQ(wrong, 0u) << "root " << root << ", bytes " << bytes << ", rank " << r;
}

TEST(MpiCommunicator, BroadcastFromNonZeroRoots) {
  auto comm = make_mpi_communicator();
  auto tiny = detail::make_mpi_communicator(kTinyCap);
  const int n = comm->size();
  for (int root : {1, n - 1}) {
    check_broadcast(*comm, root, 1000);
    check_broadcast(*tiny, root, 1000);  // 16 messages of 64 bytes, the last one short
  }
  check_broadcast(*comm, 0, 0);
}

// Rank r sends r (as a buffer of `words` int64 values r*1e6 + k) to (r+1) % n and checks
// that it received (r-1+n) % n. Even ranks send first, odd ranks receive first, so blocking
// sends cannot wait on each other around the ring whatever the message size.
void check_ring(Communicator& comm, size_t words) {
  const int r = comm.rank(), n = comm.size();
  const int next = (r + 1) % n, prev = (r - 1 + n) % n;
  std::vector<int64_t> out(words), in(words, -1);
  for (size_t k = 0; k < words; ++k) out[k] = r * int64_t{1'000'000} + static_cast<int64_t>(k);
  const size_t bytes = words * sizeof(int64_t);
  if (r % 2 == 0) {
    comm.send(out.data(), bytes, next, 7);
    comm.recv(in.data(), bytes, prev, 7);
  } else {
    comm.recv(in.data(), bytes, prev, 7);
    comm.send(out.data(), bytes, next, 7);
  }
  size_t wrong = 0;
  for (size_t k = 0; k < words; ++k)
    if (in[k] != prev * int64_t{1'000'000} + static_cast<int64_t>(k)) ++wrong;
  EXPECT_EQ(wrong, 0u) << "words " << words << ", rank " << r << ", in[0] " << in[0];
}

TEST(MpiCommunicator, SendRecvRing) {
  auto comm = make_mpi_communicator();
  check_ring(*comm, 1);
  check_ring(*comm, 100'000);  // past the eager limit: needs the rendezvous protocol
  auto tiny = detail::make_mpi_communicator(kTinyCap);
  check_ring(*tiny, 100);  // 13 messages of at most 64 bytes
}

// Causality: no rank leaves the barrier before rank 0 (which arrives late) has entered it.
// steady_clock is CLOCK_MONOTONIC, shared by the processes of one machine (CTest runs the
// ranks on one machine).
TEST(MpiCommunicator, BarrierWaitsForTheLastRank) {
  auto comm = make_mpi_communicator();
  using Clock = std::chrono::steady_clock;
  comm->barrier();
  int64_t entered = 0;
  if (comm->rank() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    entered = Clock::now().time_since_epoch().count();
  }
  comm->barrier();
  const int64_t left = Clock::now().time_since_epoch().count();
  comm->broadcast(&entered, sizeof entered, 0);
  EXPECT_GE(left, entered) << "rank " << comm->rank() << " left the barrier before rank 0 entered";
}

// Rejected on every rank before any MPI call, so no rank waits in a collective the others
// skipped; the communicator keeps working afterwards.
TEST(MpiCommunicator, RejectsHalfAndBoolSumsOnEveryRank) {
  auto comm = make_mpi_communicator();
  const int n = comm->size();
  std::vector<uint16_t> h(2 * n, 0x3f80), out(2, 0);
  for (DType t : {DType::BF16, DType::F16}) {
    const std::string msg = error_of([&] { comm->all_reduce_sum(h.data(), 2, t); });
    EXPECT_NE(msg.find("cast to f32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("all_reduce_sum"), std::string::npos) << msg;
    EXPECT_NE(error_of([&] { comm->reduce_scatter_sum(h.data(), out.data(), 2, t); }), "");
  }
  std::vector<uint8_t> b(n, 1);
  EXPECT_NE(error_of([&] { comm->all_reduce_sum(b.data(), 1, DType::Bool); }).find("bool"),
            std::string::npos);
  EXPECT_EQ(h[0], 0x3f80);
  EXPECT_EQ(out[0], 0);
  check_all_reduce<int32_t>(*comm, 5);
}

TEST(MpiCommunicator, RejectsBadRootsPeersAndTagsOnEveryRank) {
  auto comm = make_mpi_communicator();
  const int r = comm->rank(), n = comm->size();
  int x = 0;
  EXPECT_NE(error_of([&] { comm->broadcast(&x, sizeof x, n); }).find("root"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->broadcast(&x, sizeof x, -1); }).find("root"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->send(&x, sizeof x, r, 0); }).find("itself"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->recv(&x, sizeof x, n, 0); }).find("peer"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->send(&x, sizeof x, (r + 1) % n, -3); }).find("tag"),
            std::string::npos);
  comm->barrier();
}

// Mismatched point-to-point sizes become solo::Error on the receiver: a short message is
// caught by the count check, a long one by MPI (truncation) through MPI_ERRORS_RETURN.
TEST(MpiCommunicator, MismatchedRecvSizesAreErrors) {
  auto comm = make_mpi_communicator();
  const int r = comm->rank();
  int64_t words[2] = {11, 22};
  if (r == 0) {
    comm->send(words, sizeof(int64_t), 1, 3);
    comm->send(words, 2 * sizeof(int64_t), 1, 4);
  } else if (r == 1) {
    const std::string shorter = error_of([&] { comm->recv(words, 2 * sizeof(int64_t), 0, 3); });
    EXPECT_NE(shorter.find("sizes must match"), std::string::npos) << shorter;
    const std::string longer = error_of([&] { comm->recv(words, sizeof(int64_t), 0, 4); });
    EXPECT_NE(longer.find("MPI_Recv failed"), std::string::npos) << longer;
    EXPECT_NE(longer.find("recv"), std::string::npos) << longer;
  }
  comm->barrier();
}

}  // namespace
}  // namespace solo::comm

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Initialises MPI (finalised at exit by the communicator layer); kept alive until the end.
  auto world = solo::comm::make_mpi_communicator();
  if (world->size() < 2) {
    std::fprintf(stderr,
                 "mpi_test_collectives: needs at least 2 ranks; run it under "
                 "mpirun -np 2 (or via ctest -R mpi_test)\n");
    return 1;
  }
  return solo::test::run_tests_on_every_rank("mpi_test_collectives", world->rank());
}
