#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "solo/comm/comm_detail.h"
#include "solo/comm/communicator.h"
#include "solo/comm/watchdog.h"
#include "solo/core/error.h"

namespace solo::comm {

namespace {

void check_mpi(int rc, const char* op, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  const bool p2p = std::strcmp(op, "send") == 0 || std::strcmp(op, "recv") == 0;
  SOLO_FAIL(op, ": ", call, " failed: ", len > 0 ? std::string(text, len) : "unknown MPI error",
            p2p ? " (each send needs a recv of the same size and tag on the peer)"
                : " (every rank must call the same collectives in the same order with the same "
                  "sizes)");
}

// MPI can be initialised and finalised once per process. This guard owns that one
// initialisation and finalises at exit; it is created once and never changes, so it is an
// immutable process resource rather than mutable global state. MPI initialised by someone
// else (e.g. a test's main) is left for them to finalise.
class MpiProcess {
 public:
  MpiProcess() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    // FUNNELED: collectives come from the thread that drives the program; OpenMP worker
    // threads never call MPI.
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided),
              "make_mpi_communicator", "MPI_Init_thread");
    owned_ = true;
  }
  ~MpiProcess() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Finalize();
  }
  MpiProcess(const MpiProcess&) = delete;
  MpiProcess& operator=(const MpiProcess&) = delete;

 private:
  bool owned_ = false;
};

void ensure_mpi_initialized() {
  static const MpiProcess process;
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I32:
      return MPI_INT32_T;
    case DType::I64:
      return MPI_INT64_T;
    case DType::Bool:
      return MPI_UINT8_T;
    case DType::BF16:
    case DType::F16:
      return MPI_UINT16_T;  // moved as bits only; sums are rejected before any MPI call
  }
  SOLO_FAIL("invalid dtype ", static_cast<int>(dtype));
}

// One MPI communicator handle, freed (MPI_Comm_free) when this is destroyed. Once MPI is
// finalised there is nothing left to free: a communicator that outlives MpiProcess (one in a
// static, or in a program that finalises MPI itself) skips the call, which MPI would reject.
class OwnedComm {
 public:
  explicit OwnedComm(MPI_Comm comm) : comm_(comm) {}
  OwnedComm(OwnedComm&& other) noexcept : comm_(other.comm_) { other.comm_ = MPI_COMM_NULL; }
  OwnedComm& operator=(OwnedComm&&) = delete;
  OwnedComm(const OwnedComm&) = delete;
  OwnedComm& operator=(const OwnedComm&) = delete;
  ~OwnedComm() {
    if (comm_ == MPI_COMM_NULL) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_;
};

// Host buffers only, over a communicator of its own (a private duplicate of MPI_COMM_WORLD,
// or a split of one), so our messages never match another library's. Every MPI call's count
// fits an int: larger buffers go in pieces of at most max_bytes_ bytes, in the same order on
// every rank.
class MpiCommunicator final : public Communicator {
 public:
  // Owns comm from here on, also when this constructor throws.
  MpiCommunicator(OwnedComm comm, size_t max_message_bytes, const char* op)
      : max_bytes_(max_message_bytes), comm_(std::move(comm)) {
    // Errors come back as codes and become solo::Error instead of aborting the job.
    check_mpi(MPI_Comm_set_errhandler(comm_.get(), MPI_ERRORS_RETURN), op,
              "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(comm_.get(), &rank_), op, "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_.get(), &size_), op, "MPI_Comm_size");
    int* tag_ub = nullptr;
    int found = 0;
    check_mpi(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found), op,
              "MPI_Comm_get_attr");
    tag_ub_ = found && tag_ub ? *tag_ub : 32767;  // 32767: the least the standard allows
    watchdog_ = std::make_unique<CollectiveWatchdog>(rank_, size_, collective_timeout_seconds());
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  void all_reduce_sum(void* data, size_t count, DType dtype) override {
    sum_into(data, data, count, dtype, "all_reduce_sum");
  }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, bool average) override {
    if (average) detail::check_average_dtype(*this, dtype);
    sum_into(send, recv, count, dtype, "all_reduce");
    if (average) detail::divide_by_ranks(*this, recv, count, dtype);
  }

  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype) override {
    detail::check_sum_dtype(dtype, "reduce_scatter_sum");
    const CollectiveWatchdog::Scope watch(*watchdog_, "reduce_scatter", count * dtype_size(dtype));
    const MPI_Datatype t = mpi_type(dtype);
    const size_t es = dtype_size(dtype);
    if (count <= max_elems(es)) {
      check_mpi(
          MPI_Reduce_scatter_block(send, recv, static_cast<int>(count), t, MPI_SUM, comm_.get()),
          "reduce_scatter_sum", "MPI_Reduce_scatter_block");
      return;
    }
    // Piece [off, off+n) of every rank's block, packed contiguously, is one smaller
    // reduce-scatter; the pack buffer stays within the message cap.
    const auto* s = static_cast<const char*>(send);
    auto* r = static_cast<char*>(recv);
    const size_t piece = std::max<size_t>(1, max_elems(es) / size_);
    std::vector<char> packed(size_ * piece * es);
    detail::for_each_chunk(count, piece, [&](size_t off, size_t n) {
      for (int q = 0; q < size_; ++q)
        std::memcpy(packed.data() + q * n * es, s + (q * count + off) * es, n * es);
      check_mpi(MPI_Reduce_scatter_block(packed.data(), r + off * es, static_cast<int>(n), t,
                                         MPI_SUM, comm_.get()),
                "reduce_scatter_sum", "MPI_Reduce_scatter_block");
    });
  }

  void all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    const CollectiveWatchdog::Scope watch(*watchdog_, "all_gather", count * dtype_size(dtype));
    const MPI_Datatype t = mpi_type(dtype);
    const size_t es = dtype_size(dtype);
    const auto* s = static_cast<const char*>(send);
    auto* r = static_cast<char*>(recv);
    if (count <= max_elems(es)) {
      // MPI forbids aliased buffers; a send that is this rank's slot of recv is in place.
      const void* sendbuf = s == r + rank_ * count * es ? MPI_IN_PLACE : send;
      check_mpi(MPI_Allgather(sendbuf, static_cast<int>(count), t, recv, static_cast<int>(count), t,
                              comm_.get()),
                "all_gather", "MPI_Allgather");
      return;
    }
    const size_t piece = std::max<size_t>(1, max_elems(es) / size_);
    std::vector<char> gathered(size_ * piece * es);
    detail::for_each_chunk(count, piece, [&](size_t off, size_t n) {
      check_mpi(MPI_Allgather(s + off * es, static_cast<int>(n), t, gathered.data(),
                              static_cast<int>(n), t, comm_.get()),
                "all_gather", "MPI_Allgather");
      for (int q = 0; q < size_; ++q)
        std::memcpy(r + (q * count + off) * es, gathered.data() + q * n * es, n * es);
    });
  }

  void broadcast(void* data, size_t bytes, int root) override {
    SOLO_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " is not a rank of this ",
               size_, "-rank job; use a root in [0, ", size_, ")");
    const CollectiveWatchdog::Scope watch(*watchdog_, "broadcast", bytes);
    auto* p = static_cast<char*>(data);
    detail::for_each_chunk(bytes, max_bytes_, [&](size_t off, size_t n) {
      check_mpi(MPI_Bcast(p + off, static_cast<int>(n), MPI_BYTE, root, comm_.get()), "broadcast",
                "MPI_Bcast");
    });
  }

  void send(const void* data, size_t bytes, int peer, int tag) override {
    check_peer("send", peer, tag);
    const CollectiveWatchdog::Scope watch(*watchdog_, "send", bytes);
    const auto* p = static_cast<const char*>(data);
    // Messages between two ranks with one tag arrive in order, so pieces need no numbering.
    detail::for_each_chunk(bytes, max_bytes_, [&](size_t off, size_t n) {
      check_mpi(MPI_Send(p + off, static_cast<int>(n), MPI_BYTE, peer, tag, comm_.get()), "send",
                "MPI_Send");
    });
  }

  void recv(void* data, size_t bytes, int peer, int tag) override {
    check_peer("recv", peer, tag);
    const CollectiveWatchdog::Scope watch(*watchdog_, "recv", bytes);
    auto* p = static_cast<char*>(data);
    detail::for_each_chunk(bytes, max_bytes_, [&](size_t off, size_t n) {
      MPI_Status status;
      check_mpi(MPI_Recv(p + off, static_cast<int>(n), MPI_BYTE, peer, tag, comm_.get(), &status),
                "recv", "MPI_Recv");
      int got = 0;
      check_mpi(MPI_Get_count(&status, MPI_BYTE, &got), "recv", "MPI_Get_count");
      SOLO_CHECK(static_cast<size_t>(got) == n, "recv: expected ", bytes, " bytes from rank ", peer,
                 " (tag ", tag, ") but the sender sent fewer; send and recv sizes must match");
    });
  }

  void barrier() override {
    const CollectiveWatchdog::Scope watch(*watchdog_, "barrier", 0);
    check_mpi(MPI_Barrier(comm_.get()), "barrier", "MPI_Barrier");
  }

  // The child keeps the message cap, so a split of a capped communicator is chunked alike.
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split(comm_.get(), color < 0 ? MPI_UNDEFINED : color, key, &sub), "split",
              "MPI_Comm_split");
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_unique<MpiCommunicator>(OwnedComm(sub), max_bytes_, "split");
  }

 private:
  size_t max_elems(size_t elem_size) const { return std::max<size_t>(1, max_bytes_ / elem_size); }

  // recv = sum over ranks of send, straight from send into recv (MPI_IN_PLACE when they are
  // the same buffer), in messages under the cap.
  void sum_into(const void* send, void* recv, size_t count, DType dtype, const char* op) {
    detail::check_sum_dtype(dtype, op);
    const CollectiveWatchdog::Scope watch(*watchdog_, op, count * dtype_size(dtype));
    const MPI_Datatype t = mpi_type(dtype);
    const size_t es = dtype_size(dtype);
    const auto* s = static_cast<const char*>(send);
    auto* r = static_cast<char*>(recv);
    detail::for_each_chunk(count, max_elems(es), [&](size_t off, size_t n) {
      const void* from = send == recv ? MPI_IN_PLACE : s + off * es;
      check_mpi(MPI_Allreduce(from, r + off * es, static_cast<int>(n), t, MPI_SUM, comm_.get()), op,
                "MPI_Allreduce");
    });
  }

  void check_peer(const char* op, int peer, int tag) const {
    SOLO_CHECK(peer >= 0 && peer < size_, op, ": peer ", peer, " is not a rank of this ", size_,
               "-rank job; use a peer in [0, ", size_, ")");
    // A blocking send to oneself deadlocks once the message outgrows MPI's eager buffer.
    SOLO_CHECK(peer != rank_, op, ": rank ", rank_,
               " cannot send to or receive from itself; copy the buffer instead");
    SOLO_CHECK(tag >= 0 && tag <= tag_ub_, op, ": tag ", tag, " is outside [0, ", tag_ub_,
               "]; use a tag in that range");
  }

  size_t max_bytes_;
  OwnedComm comm_;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // ends the process when a call hangs
};

}  // namespace

std::unique_ptr<Communicator> detail::make_mpi_communicator(size_t max_message_bytes) {
  constexpr const char* op = "make_mpi_communicator";
  SOLO_CHECK(max_message_bytes >= 1 && max_message_bytes <= static_cast<size_t>(INT_MAX), op,
             ": message cap ", max_message_bytes,
             " is outside [1, INT_MAX] bytes; pass a cap MPI counts can hold");
  ensure_mpi_initialized();
  MPI_Comm dup = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &dup), op, "MPI_Comm_dup");
  return std::make_unique<MpiCommunicator>(OwnedComm(dup), max_message_bytes, op);
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  return detail::make_mpi_communicator(static_cast<size_t>(INT_MAX));
}

bool launched_as_mpi_rank() {
  // Open MPI's mpirun, PMIx launchers and Slurm's srun (PMI) each set one of these per rank.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

}  // namespace solo::comm
