// Internals shared by the communicators and their tests: dtype checks for sums, message
// chunking, and an MPI communicator with a small message cap so tests reach the chunked paths.
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>

#include "solo/comm/communicator.h"
#include "solo/core/dtype.h"
#include "solo/core/error.h"

namespace solo::comm::detail {

// Every communicator rejects the same sums, so a program that works on one device does not
// start failing when the flavor adds devices.
inline void check_sum_dtype(DType dtype, const char* op) {
  SOLO_CHECK(dtype != DType::BF16 && dtype != DType::F16, op, ": ", dtype_name(dtype),
             " sums are not supported (they lose precision across ranks); cast to f32 first");
  SOLO_CHECK(dtype != DType::Bool, op,
             ": a sum of bool is not meaningful; cast to i32 (or i64) to count, then compare");
}

// all_reduce's average: the dtype check made before any rank sums (so none is left with a sum
// it cannot turn into a mean), and the division of the host buffer after the sum.
void check_average_dtype(const Communicator& c, DType dtype);
void divide_by_ranks(const Communicator& c, void* data, size_t count, DType dtype);

// Calls f(offset, n) for consecutive pieces of [0, total), each at most max_piece long
// (max_piece >= 1). Calls nothing when total is 0.
template <class F>
void for_each_chunk(size_t total, size_t max_piece, F&& f) {
  for (size_t off = 0; off < total;) {
    const size_t n = std::min(max_piece, total - off);
    f(off, n);
    off += n;
  }
}

// An MPI communicator whose messages carry at most max_message_bytes each (at least one
// element); make_mpi_communicator uses INT_MAX, the largest count MPI accepts.
std::unique_ptr<Communicator> make_mpi_communicator(size_t max_message_bytes);

}  // namespace solo::comm::detail
