// The one-rank communicator: sums are identities, scatter/gather are copies, broadcast from
// rank 0 is a no-op, point-to-point or unsupported sums fail with one-line errors, and split
// makes groups of one. Also the chunking helper the MPI communicator uses, and launcher
// detection from the environment.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "solo/comm/comm_detail.h"
#include "solo/comm/communicator.h"
#include "solo/core/error.h"
#include "test_support.h"

namespace solo::comm {
namespace {

using test::dtype_of;
using test::error_of;

TEST(LocalCommunicator, IsRankZeroOfOne) {
  auto comm = make_local_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_STREQ(comm->name(), "local");
}

TEST(LocalCommunicator, AllReduceSumLeavesDataUnchanged) {
  auto comm = make_local_communicator();
  std::vector<float> f = {1.5f, -2.f, 3.25f};
  comm->all_reduce_sum(f.data(), f.size(), DType::F32);
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.f, 3.25f}));
  std::vector<int64_t> l = {int64_t{1} << 40, -7};
  comm->all_reduce_sum(l.data(), l.size(), DType::I64);
  EXPECT_EQ(l, (std::vector<int64_t>{int64_t{1} << 40, -7}));
}

TEST(LocalCommunicator, AllReduceOutOfPlaceCopiesSendIntoRecv) {
  auto comm = make_local_communicator();
  const std::vector<float> send = {0.5f, -1.f, 8.f};
  std::vector<float> recv(3, 0.f);
  comm->all_reduce(send.data(), recv.data(), send.size(), DType::F32, /*average=*/true);
  EXPECT_EQ(recv, send);
}

TEST(LocalCommunicator, AllReduceAverageOfOneRankIsTheData) {
  auto comm = make_local_communicator();
  EXPECT_FALSE(comm->device_memory());
  std::vector<double> d = {1.5, -2.0};
  comm->all_reduce(d.data(), d.size(), DType::F64, /*average=*/true);
  EXPECT_EQ(d, (std::vector<double>{1.5, -2.0}));
  std::vector<int64_t> l = {3};
  EXPECT_NE(error_of([&] {
              comm->all_reduce(l.data(), 1, DType::I64, true);
            }).find("averaging needs f32 or f64 on communicator 'local'"),
            std::string::npos);
}

TEST(LocalCommunicator, ReduceScatterAndAllGatherCopy) {
  auto comm = make_local_communicator();
  const std::vector<double> send = {1.0, 2.0, 3.0, 4.0};
  std::vector<double> recv(4, -1.0);
  comm->reduce_scatter_sum(send.data(), recv.data(), 4, DType::F64);
  EXPECT_EQ(recv, send);

  const std::vector<int32_t> chunk = {7, 8, 9};
  std::vector<int32_t> gathered(3, 0);
  comm->all_gather(chunk.data(), gathered.data(), 3, DType::I32);
  EXPECT_EQ(gathered, chunk);

  // Only count elements are copied: the tail of a larger buffer is untouched.
  std::vector<uint16_t> halfs = {0x3f80, 0xc000, 0x1234};
  std::vector<uint16_t> out = {0, 0, 0xbeef};
  comm->all_gather(halfs.data(), out.data(), 2, DType::BF16);
  EXPECT_EQ(out, (std::vector<uint16_t>{0x3f80, 0xc000, 0xbeef}));

  // In place (send == recv) is allowed.
  comm->all_gather(out.data(), out.data(), 3, DType::BF16);
  EXPECT_EQ(out, (std::vector<uint16_t>{0x3f80, 0xc000, 0xbeef}));
}

TEST(LocalCommunicator, BroadcastFromRankZeroIsNoOp) {
  auto comm = make_local_communicator();
  std::vector<uint8_t> bytes = {1, 2, 3};
  comm->broadcast(bytes.data(), bytes.size(), 0);
  EXPECT_EQ(bytes, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_NE(error_of([&] { comm->broadcast(bytes.data(), bytes.size(), 1); }).find("root 1"),
            std::string::npos);
}

TEST(LocalCommunicator, SendAndRecvNeedAPeer) {
  auto comm = make_local_communicator();
  int x = 5;
  const std::string expected = "send/recv needs a peer; a local communicator has one rank";
  EXPECT_EQ(error_of([&] { comm->send(&x, sizeof x, 0, 0); }), expected);
  EXPECT_EQ(error_of([&] { comm->recv(&x, sizeof x, 0, 0); }), expected);
  EXPECT_EQ(x, 5);
}

TEST(LocalCommunicator, BarrierReturns) {
  auto comm = make_local_communicator();
  EXPECT_NO_THROW(comm->barrier());
}

// The same sums are rejected as on MPI, so a one-device run fails where a multi-device one would.
TEST(LocalCommunicator, RejectsHalfAndBoolSums) {
  auto comm = make_local_communicator();
  uint16_t h[2] = {0x3f80, 0x3f80};
  std::vector<uint16_t> out(2);
  for (DType t : {DType::BF16, DType::F16}) {
    const std::string msg = error_of([&] { comm->all_reduce_sum(h, 2, t); });
    EXPECT_NE(msg.find("cast to f32"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dtype_name(t)), std::string::npos) << msg;
    EXPECT_NE(error_of([&] { comm->reduce_scatter_sum(h, out.data(), 2, t); }), "");
  }
  bool b[2] = {true, false};
  const std::string msg = error_of([&] { comm->all_reduce_sum(b, 2, DType::Bool); });
  EXPECT_NE(msg.find("bool"), std::string::npos) << msg;
  EXPECT_EQ(h[0], 0x3f80);
  EXPECT_EQ(out, (std::vector<uint16_t>{0, 0}));
}

// One rank forms a group of one whatever the color and key, or none with a negative color;
// the child and the parent are independent local communicators.
TEST(LocalCommunicator, SplitMakesAnotherLocalCommunicator) {
  auto comm = make_local_communicator();
  for (int color : {0, 3}) {
    auto child = comm->split(color, -5);
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(child->rank(), 0);
    EXPECT_EQ(child->size(), 1);
    EXPECT_STREQ(child->name(), "local");
    std::vector<float> f = {1.5f, -2.f};
    child->all_reduce_sum(f.data(), f.size(), DType::F32);
    EXPECT_EQ(f, (std::vector<float>{1.5f, -2.f}));
    auto grandchild = child->split(0, 0);
    ASSERT_NE(grandchild, nullptr);
    child.reset();
    EXPECT_EQ(grandchild->size(), 1);
  }
  EXPECT_TRUE(comm->split(Communicator::kNoGroup, 0) == nullptr);
  EXPECT_TRUE(comm->split(-7, 1) == nullptr);
  std::vector<int64_t> l = {4};
  comm->all_reduce_sum(l.data(), l.size(), DType::I64);
  EXPECT_EQ(l, std::vector<int64_t>{4});
}

TEST(CommChunks, CoverTheRangeInOrderWithBoundedPieces) {
  std::vector<std::pair<size_t, size_t>> pieces;
  detail::for_each_chunk(10, 4, [&](size_t off, size_t n) { pieces.emplace_back(off, n); });
  EXPECT_EQ(pieces, (std::vector<std::pair<size_t, size_t>>{{0, 4}, {4, 4}, {8, 2}}));

  pieces.clear();
  detail::for_each_chunk(8, 4, [&](size_t off, size_t n) { pieces.emplace_back(off, n); });
  EXPECT_EQ(pieces, (std::vector<std::pair<size_t, size_t>>{{0, 4}, {4, 4}}));

  pieces.clear();
  detail::for_each_chunk(0, 4, [&](size_t off, size_t n) { pieces.emplace_back(off, n); });
  EXPECT_TRUE(pieces.empty());

  pieces.clear();
  detail::for_each_chunk(3, 100, [&](size_t off, size_t n) { pieces.emplace_back(off, n); });
  EXPECT_EQ(pieces, (std::vector<std::pair<size_t, size_t>>{{0, 3}}));
}

// Sets or clears environment variables for one test and restores them afterwards.
class EnvGuard {
 public:
  explicit EnvGuard(std::vector<std::string> names) : names_(std::move(names)) {
    for (const auto& n : names_) {
      const char* v = std::getenv(n.c_str());
      saved_.push_back(v ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(n.c_str());
    }
  }
  ~EnvGuard() {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (saved_[i])
        setenv(names_[i].c_str(), saved_[i]->c_str(), 1);
      else
        unsetenv(names_[i].c_str());
    }
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::optional<std::string>> saved_;
};

TEST(LaunchedAsMpiRank, FollowsLauncherEnvironment) {
  const std::vector<std::string> vars = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"};
  EnvGuard guard(vars);
  EXPECT_FALSE(launched_as_mpi_rank());
  for (const auto& v : vars) {
    setenv(v.c_str(), "2", 1);
    EXPECT_TRUE(launched_as_mpi_rank()) << v;
    unsetenv(v.c_str());
    EXPECT_FALSE(launched_as_mpi_rank()) << v;
  }
}

}  // namespace
}  // namespace solo::comm
