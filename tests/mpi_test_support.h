// The main of the tests that run as MPI jobs (tests/mpi_test_*.cc): ranks other than 0
// print only their failed assertions, and every rank exits non-zero when any rank failed, so
// that mpirun and CTest see the failure.
#pragma once
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>
#include <string>

#include "solo/comm/communicator.h"

namespace solo::test {

// Prints failed assertions with the rank and test name (for ranks other than 0).
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestStart(const ::testing::TestInfo& info) override {
    test_ = std::string(info.test_suite_name()) + "." + info.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s failed at %s:%d\n%s\n", rank_, test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
  }

 private:
  int rank_;
  std::string test_;
};

// Runs every test on this rank (MPI initialised by the caller) and returns the job's status.
inline int run_tests_on_every_rank(const char* program, int rank) {
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  const int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = failed;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any_failed && rank == 0 && !failed)
    std::fprintf(stderr, "%s: a test failed on another rank\n", program);
  return any_failed;
}

// The main of a test of several ranks: an MPI communicator over the job (MPI finalised at
// exit) given to the tests through `world`, then every test on this rank; needs >= 2 ranks.
inline int main_on_every_rank(int argc, char** argv, const char* program,
                              comm::Communicator*& world) {
  ::testing::InitGoogleTest(&argc, argv);
  static std::unique_ptr<comm::Communicator> w = comm::make_mpi_communicator();
  if (w->size() < 2) {
    std::fprintf(stderr, "%s: needs at least 2 ranks (mpirun -np 2)\n", program);
    return 1;
  }
  world = w.get();
  return run_tests_on_every_rank(program, w->rank());
}

}  // namespace solo::test
