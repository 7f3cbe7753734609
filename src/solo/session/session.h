// solo::Session joins the program to the virtual accelerator of the current flavor. When
// the flavor has N > 1 devices and the process is not yet a rank of a job, the constructor
// relaunches the same command line under mpirun (or srun inside a Slurm allocation) with N
// ranks, streams rank 0's output, and exits the process with the job's status; it never
// returns in that case. Inside a job (or for one device) it initialises the communicator,
// binds the rank to its device and logs the events of DESIGN.md §1.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "solo/cluster/inventory.h"
#include "solo/comm/communicator.h"
#include "solo/tensor/tensor.h"

namespace solo {

class Session {
 public:
  Session(int argc, char** argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int rank() const { return comm_->rank(); }
  int world_size() const { return comm_->size(); }
  bool is_main() const { return rank() == 0; }
  // Host communicator of the job's ranks (MPI in a job, local otherwise).
  comm::Communicator& comm() const { return *comm_; }
  // The device this rank computes on: cpu, or cuda on GPU flavors (the rank's own GPU: the
  // Session leaves each rank only the GPU of its local rank visible, as device 0). Gradients
  // of tensors on it are averaged over the ranks, through NCCL on cuda.
  Device device() const;
  const cluster::Flavor& flavor() const { return flavor_; }
  const std::string& job_id() const { return job_id_; }
  // Collective: every rank reports its device's memory peak (device_memory_peak_bytes) and
  // rank 0 updates the job's record, which `solo smi` shows. Call it where the program logs.
  void report_memory();

 private:
  void write_record(const std::vector<int64_t>& rank_memory_bytes) const;  // rank 0's record
  cluster::Inventory inventory_;
  cluster::Flavor flavor_;
  std::unique_ptr<comm::Communicator> comm_;
  std::string job_id_;
  std::string command_;  // the command line, for the job record
  int64_t started_ = 0;  // Unix time of the start, for the job record
};

// Builds the launcher command line for `argv` on flavor `f` (mpirun with a hostfile, or
// srun); exposed for tests. `hostfile` is the path the hostfile is (to be) written to.
std::vector<std::string> launcher_command(const cluster::Inventory& inv, const cluster::Flavor& f,
                                          const std::vector<std::string>& argv,
                                          const std::string& hostfile);

}  // namespace solo
