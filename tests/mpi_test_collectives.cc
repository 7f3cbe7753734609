// Collectives of the MPI communicator, run by CTest under 2, 3 and 4 ranks. Inputs are
// functions of the rank and index; expectations are closed forms (sums of arithmetic series),
// so every rank checks its own result independently. Each test makes its own communicator
// (a collective dup; every rank runs the same tests in the same order). MpiSplit: groups made
// by split, each checked against its members' world ranks.
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

// Sub-communicators (split). Rank w of the world contributes w*1000 + i at index i, so a
// group's sum at i is 1000 * (the sum of its members' world ranks) + size * i. `members` lists
// the group's world ranks in sub-rank order and `members_sum` is their sum, both worked out
// in closed form by each test.
void check_group(Communicator& group, int world_rank, const std::vector<int32_t>& members,
                 int64_t members_sum) {
  const int m = static_cast<int>(members.size());
  ASSERT_EQ(group.size(), m) << "world rank " << world_rank;
  ASSERT_GE(group.rank(), 0);
  ASSERT_LT(group.rank(), m);
  EXPECT_EQ(members[group.rank()], world_rank) << "sub-rank " << group.rank();
  EXPECT_STREQ(group.name(), "mpi");
  EXPECT_FALSE(group.device_memory());

  std::vector<int64_t> l(257);
  std::vector<double> d(257);
  for (size_t i = 0; i < l.size(); ++i) {
    l[i] = world_rank * int64_t{1000} + static_cast<int64_t>(i);
    d[i] = static_cast<double>(l[i]);
  }
  group.all_reduce_sum(l.data(), l.size(), DType::I64);
  group.all_reduce_sum(d.data(), d.size(), DType::F64);
  size_t wrong = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    const int64_t want = 1000 * members_sum + int64_t{m} * static_cast<int64_t>(i);
    wrong += l[i] != want || d[i] != static_cast<double>(want);
  }
  EXPECT_EQ(wrong, 0u) << "world rank " << world_rank << ", l[0] " << l[0];

  // Gathered in sub-rank order: the members' world ranks.
  const int32_t mine = world_rank;
  std::vector<int32_t> gathered(m, -1);
  group.all_gather(&mine, gathered.data(), 1, DType::I32);
  EXPECT_EQ(gathered, members) << "world rank " << world_rank;

  // Roots are sub-ranks: the last one's world rank reaches every member.
  int32_t root_value = world_rank;
  group.broadcast(&root_value, sizeof root_value, m - 1);
  EXPECT_EQ(root_value, members[m - 1]) << "world rank " << world_rank;
}

// Even and odd world ranks (color w % 2, key w): group c is c, c + 2, ..., sub-rank w / 2.
TEST(MpiSplit, ByParity) {
  auto world = make_mpi_communicator();
  const int w = world->rank(), n = world->size();
  const int c = w % 2, m = (n - c + 1) / 2;
  auto group = world->split(c, w);
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->rank(), w / 2);
  std::vector<int32_t> members(m);
  for (int j = 0; j < m; ++j) members[j] = c + 2 * j;
  check_group(*group, w, members, int64_t{m} * c + int64_t{m} * (m - 1));
}

// Consecutive pairs (color w / 2): {0, 1}, {2, 3}; with 3 ranks, {0, 1} and {2}.
TEST(MpiSplit, ByBlocksOfTwo) {
  auto world = make_mpi_communicator();
  const int w = world->rank(), n = world->size();
  const int c = w / 2, m = std::min(2, n - 2 * c);
  auto group = world->split(c, w);
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->rank(), w % 2);
  std::vector<int32_t> members(m);
  for (int j = 0; j < m; ++j) members[j] = 2 * c + j;
  check_group(*group, w, members, int64_t{2} * c * m + m * (m - 1) / 2);
}

// Sub-ranks follow (key, rank): key -w reverses them; equal keys keep the parent's order; key
// w % 2 puts the even ranks first.
TEST(MpiSplit, KeysOrderSubRanks) {
  auto world = make_mpi_communicator();
  const int w = world->rank(), n = world->size();
  const int64_t all_sum = int64_t{n} * (n - 1) / 2;

  auto reversed = world->split(0, -w);
  ASSERT_NE(reversed, nullptr);
  EXPECT_EQ(reversed->rank(), n - 1 - w);
  std::vector<int32_t> members(n);
  for (int j = 0; j < n; ++j) members[j] = n - 1 - j;
  check_group(*reversed, w, members, all_sum);

  const int c = w % 2, m = (n - c + 1) / 2;
  auto parity_reversed = world->split(c, -w);
  ASSERT_NE(parity_reversed, nullptr);
  EXPECT_EQ(parity_reversed->rank(), m - 1 - w / 2);
  std::vector<int32_t> parity_members(m);
  for (int j = 0; j < m; ++j) parity_members[j] = c + 2 * (m - 1 - j);
  check_group(*parity_reversed, w, parity_members, int64_t{m} * c + int64_t{m} * (m - 1));

  auto ties = world->split(0, 7);
  ASSERT_NE(ties, nullptr);
  EXPECT_EQ(ties->rank(), w);
  for (int j = 0; j < n; ++j) members[j] = j;
  check_group(*ties, w, members, all_sum);

  const int evens = (n + 1) / 2;
  auto evens_first = world->split(0, w % 2);
  ASSERT_NE(evens_first, nullptr);
  EXPECT_EQ(evens_first->rank(), w % 2 == 0 ? w / 2 : evens + w / 2);
  for (int j = 0; j < n; ++j) members[j] = j < evens ? 2 * j : 2 * (j - evens) + 1;
  check_group(*evens_first, w, members, all_sum);
}

// A negative color takes part in the split and joins no group; the others are unaffected.
TEST(MpiSplit, NegativeColorJoinsNoGroup) {
  auto world = make_mpi_communicator();
  const int w = world->rank(), n = world->size();
  auto without_first = world->split(w == 0 ? Communicator::kNoGroup : 1, w);
  EXPECT_EQ(without_first == nullptr, w == 0);
  if (without_first) {
    EXPECT_EQ(without_first->rank(), w - 1);
    std::vector<int32_t> members(n - 1);
    for (int j = 0; j < n - 1; ++j) members[j] = j + 1;
    check_group(*without_first, w, members, int64_t{n} * (n - 1) / 2);
  }
  // Any negative color, not only kNoGroup.
  auto evens = world->split(w % 2 == 1 ? -5 : 0, w);
  EXPECT_EQ(evens == nullptr, w % 2 == 1);
  if (evens) {
    const int m = (n + 1) / 2;
    std::vector<int32_t> members(m);
    for (int j = 0; j < m; ++j) members[j] = 2 * j;
    check_group(*evens, w, members, int64_t{m} * (m - 1));
  }
  // Nobody joins: every rank gets nullptr.
  EXPECT_TRUE(world->split(Communicator::kNoGroup, 0) == nullptr);
  check_all_reduce<int64_t>(*world, 100);
}

// The 2 x 2 mesh at 4 ranks (ragged at 2 and 3): tensor-parallel rows {0, 1}, {2, 3} and
// data-parallel columns {0, 2}, {1, 3}. Collectives on the rows, the columns and the world
// interleave without matching each other's, also when ranks call them in different orders.
TEST(MpiSplit, MeshGroupsAreIndependent) {
  auto world = make_mpi_communicator();
  const int w = world->rank(), n = world->size();
  auto row = world->split(w / 2, w);
  auto col = world->split(w % 2, w);
  ASSERT_NE(row, nullptr);
  ASSERT_NE(col, nullptr);
  const int row_size = std::min(2, n - 2 * (w / 2));
  const int col_size = (n - w % 2 + 1) / 2;
  ASSERT_EQ(row->size(), row_size);
  ASSERT_EQ(col->size(), col_size);
  if (n == 4) {
    EXPECT_EQ(row->size(), 2);
    EXPECT_EQ(col->size(), 2);
  }
  // Sums of world ranks: a row is 2c, 2c+1; a column is c, c+2, ...
  const int64_t row_sum = int64_t{2} * (w / 2) * row_size + row_size * (row_size - 1) / 2;
  const int64_t col_sum = int64_t{col_size} * (w % 2) + int64_t{col_size} * (col_size - 1);
  const int64_t world_sum = int64_t{n} * (n - 1) / 2;

  for (int round = 0; round < 3; ++round) {
    int64_t a = w, b = w, c = w;
    row->all_reduce_sum(&a, 1, DType::I64);
    col->all_reduce_sum(&b, 1, DType::I64);
    world->all_reduce_sum(&c, 1, DType::I64);
    EXPECT_EQ(a, row_sum) << "round " << round << ", rank " << w;
    EXPECT_EQ(b, col_sum) << "round " << round << ", rank " << w;
    EXPECT_EQ(c, world_sum) << "round " << round << ", rank " << w;
    std::vector<int32_t> in_row(row_size, -1), in_col(col_size, -1);
    const int32_t mine = w;
    col->all_gather(&mine, in_col.data(), 1, DType::I32);
    row->all_gather(&mine, in_row.data(), 1, DType::I32);
    for (int j = 0; j < row_size; ++j) EXPECT_EQ(in_row[j], 2 * (w / 2) + j);
    for (int j = 0; j < col_size; ++j) EXPECT_EQ(in_col[j], w % 2 + 2 * j);
  }

  // Even ranks reduce over their row first, odd ranks over their column first: each group's
  // members still call its collectives in one order, so nothing waits on the other group.
  int64_t a = w + 1, b = 10 * (w + 1);
  if (w % 2 == 0) {
    row->all_reduce_sum(&a, 1, DType::I64);
    col->all_reduce_sum(&b, 1, DType::I64);
  } else {
    col->all_reduce_sum(&b, 1, DType::I64);
    row->all_reduce_sum(&a, 1, DType::I64);
  }
  EXPECT_EQ(a, row_sum + row_size) << "rank " << w;
  EXPECT_EQ(b, 10 * (col_sum + col_size)) << "rank " << w;

  // Point to point with sub-ranks as peers and the same tag on both groups: a row partner
  // and a column partner each get their own message.
  auto exchange = [&](Communicator& g, int64_t value) {
    if (g.size() != 2) return int64_t{-1};
    const int peer = 1 - g.rank();
    int64_t got = -1;
    if (g.rank() == 0) {
      g.send(&value, sizeof value, peer, 5);
      g.recv(&got, sizeof got, peer, 5);
    } else {
      g.recv(&got, sizeof got, peer, 5);
      g.send(&value, sizeof value, peer, 5);
    }
    return got;
  };
  const int64_t from_row = exchange(*row, 100 + w);
  const int64_t from_col = exchange(*col, 200 + w);
  if (row_size == 2) {
    EXPECT_EQ(from_row, 100 + (w ^ 1)) << "rank " << w;
  }
  if (col_size == 2) {
    EXPECT_EQ(from_col, 200 + (w < 2 ? w + 2 : w - 2)) << "rank " << w;
  }

  // The parent still works with its children alive, and after they are gone.
  check_all_reduce<int64_t>(*world, 1001);
  row.reset();
  col.reset();
  check_all_gather<int32_t>(*world, 7, false);
}

// A child owns its MPI communicator: it outlives the parent it was split from, and can be
// split again.
TEST(MpiSplit, ChildOutlivesParentAndSplitsAgain) {
  auto world = make_mpi_communicator();
  const int w = world->rank(), n = world->size();
  auto parity = world->split(w % 2, w);
  ASSERT_NE(parity, nullptr);
  world.reset();
  const int c = w % 2, m = (n - c + 1) / 2;
  std::vector<int32_t> members(m);
  for (int j = 0; j < m; ++j) members[j] = c + 2 * j;
  check_group(*parity, w, members, int64_t{m} * c + int64_t{m} * (m - 1));
  auto single = parity->split(parity->rank(), 0);
  ASSERT_NE(single, nullptr);
  check_group(*single, w, {w}, w);
  parity.reset();
  check_group(*single, w, {w}, w);
}

// A split keeps the parent's message cap, so its collectives take the chunked paths too.
TEST(MpiSplit, ChildOfACappedCommunicatorIsChunked) {
  auto tiny = detail::make_mpi_communicator(kTinyCap);
  const int w = tiny->rank();
  auto reversed_parity = tiny->split(w % 2, -w);
  ASSERT_NE(reversed_parity, nullptr);
  check_all_reduce<float>(*reversed_parity, 1001);
  check_reduce_scatter<int64_t>(*reversed_parity, 37);
  check_all_gather<int64_t>(*reversed_parity, 29, true);
  check_broadcast(*reversed_parity, reversed_parity->size() - 1, 1000);
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
