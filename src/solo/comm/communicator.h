// Communicators: collectives over the ranks of a job. `local` is the one-rank communicator;
// `mpi` runs over Open MPI on host buffers; `nccl` (comm/nccl/, built with CUDA and NCCL)
// runs on device buffers. Every rank must call the same collectives in the same order.
#pragma once
#include <cstddef>
#include <memory>
#include <span>

#include "solo/core/dtype.h"

namespace solo::comm {

// One tensor of a grouped all-reduce: count elements of dtype from send into recv.
struct ReduceBuffer {
  const void* send;
  void* recv;
  size_t count;
  DType dtype;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;
  // True when the buffers passed to the collectives are device memory (NCCL), false for host
  // memory (local, MPI). Device communicators queue their work and return before it is done.
  virtual bool device_memory() const { return false; }

  // In place: data[i] = sum over ranks of data[i]. count elements of dtype (float or integer).
  virtual void all_reduce_sum(void* data, size_t count, DType dtype) = 0;
  // recv[i] = sum over ranks of send[i] (send == recv: in place), then with `average` divided
  // by size() (float dtypes only). The default copies send to recv and sums and scales on the
  // host; MPI and NCCL reduce from send into recv directly (no copy of ours).
  virtual void all_reduce(const void* send, void* recv, size_t count, DType dtype, bool average);
  void all_reduce(void* data, size_t count, DType dtype, bool average) {
    all_reduce(data, data, count, dtype, average);
  }
  // Overlap. An asynchronous communicator (NCCL) may return from a start_* call before the
  // caller's later work is ordered after the collective, so that compute goes on while it
  // runs, and returns a ticket: wait_for(ticket) orders the caller's later work after that
  // collective and every one started before it (they run in the order started), leaving
  // later ones running; wait_started() after all of them. Until then send must not change
  // and recv must not be read. Host communicators finish in start_* and return ticket 0.
  virtual bool asynchronous() const { return false; }
  virtual size_t start_all_reduce(const void* send, void* recv, size_t count, DType dtype,
                                  bool average) {
    all_reduce(send, recv, count, dtype, average);
    return 0;
  }
  virtual size_t start_all_gather(const void* send, void* recv, size_t count, DType dtype) {
    all_gather(send, recv, count, dtype);
    return 0;
  }
  virtual void wait_for(size_t ticket) {
    if (ticket != 0) wait_started();
  }
  virtual void wait_started() {}
  // Several all-reduces as one group (a gradient bucket): NCCL launches them together; the
  // default runs them one by one, in order.
  virtual void all_reduce_group(std::span<const ReduceBuffer> buffers, bool average) {
    for (const ReduceBuffer& b : buffers) all_reduce(b.send, b.recv, b.count, b.dtype, average);
  }
  virtual size_t start_all_reduce_group(std::span<const ReduceBuffer> buffers, bool average) {
    size_t ticket = 0;
    for (const ReduceBuffer& b : buffers)
      ticket = start_all_reduce(b.send, b.recv, b.count, b.dtype, average);
    return ticket;
  }
  // Throws if a collective already queued has failed (a device communicator's peer died or
  // its link broke); a host waiting on queued work calls it while it waits.
  virtual void check_errors() {}
  // send holds size() * count elements; rank r receives into recv (count elements) the sum
  // over ranks of send[r*count, (r+1)*count).
  virtual void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype) = 0;
  // recv (size() * count elements) gets every rank's send (count elements), in rank order.
  virtual void all_gather(const void* send, void* recv, size_t count, DType dtype) = 0;
  // data (bytes) of `root` is copied to every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void send(const void* data, size_t bytes, int peer, int tag) = 0;
  virtual void recv(void* data, size_t bytes, int peer, int tag) = 0;
  virtual void barrier() = 0;

  // Passed as split's color by a rank that joins no group.
  static constexpr int kNoGroup = -1;
  // The ranks of this communicator with the same color form a new communicator, ranked by key
  // and then by rank here: Megatron's tensor- and data-parallel groups. Collective: every rank
  // calls it, in the same order as its other collectives. A negative color (kNoGroup) still
  // takes part, joins no group and gets nullptr, as MPI_UNDEFINED does: rejecting it on one
  // rank would leave the others waiting in the split. The new communicator is independent of
  // this one (either may be destroyed first; their collectives never match each other's) and
  // has the same kind: host or device buffers, and for NCCL the same device and compute stream.
  // Pure virtual: every communicator, test stand-ins included, must decide whether it splits,
  // rather than inherit a failure that surfaces only once a mesh is built on it.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
};

// One rank: every collective is a copy or a no-op.
std::unique_ptr<Communicator> make_local_communicator();
// The ranks of the current MPI job (initialises MPI on first use; finalised at exit).
// Throws solo::Error when Solo was built without MPI.
std::unique_ptr<Communicator> make_mpi_communicator();
// True when this process was started by mpirun/srun as one rank of a job.
bool launched_as_mpi_rank();

}  // namespace solo::comm
