// Internals of the Session's relaunch: finding the launcher, running the job with its stderr
// passed through, and naming the rank that ended a failed job. Exposed for tests.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace solo::launch {

// Absolute path of the executable `name` on $PATH, or "" when there is none.
std::string find_on_path(const std::string& name);

// True inside a Slurm allocation that can start job steps (SLURM_JOB_ID set, srun on PATH).
bool in_slurm_allocation();

// This process's index among the job's ranks on its host, as the launcher tells it
// (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID), or nullopt outside a job.
std::optional<int> local_rank_from_env();

// The CUDA_VISIBLE_DEVICES value that leaves a rank only its own GPU: entry `local_rank` of the
// list the job was given (`inherited`, may be null), or the index itself. Empty for CPU devices.
std::string visible_devices_for(const std::string& device_kind, int local_rank,
                                const char* inherited);

// Reads mpirun's stderr line by line and remembers the first rank it reports as failed.
class FailureParser {
 public:
  void feed(const std::string& line);
  // "the job ended: rank R exited with status S" when a rank was named, else
  // "the job ended with status S" (`status` is the launcher's exit code).
  std::string describe(int status) const;

 private:
  std::optional<int> rank_;
  std::optional<int> signal_;
  std::optional<int> exit_code_;
};

struct JobEnd {
  int status = 0;            // the launcher's exit code, 128 + signal when it was killed
  std::string message;       // FailureParser::describe when status != 0
  bool cause_shown = false;  // a rank's "error: ..." line reached stderr
};

// Runs `cmd` (cmd[0] an absolute path) with stdout inherited and stderr passed through,
// line by line, while it is scanned for failed ranks: Open MPI's banners (blocks between
// lines of dashes) are scanned but not shown, and an "error: ..." line that several ranks
// print alike is shown once. SIGINT and SIGTERM are forwarded to it.
JobEnd run_job(const std::vector<std::string>& cmd);

}  // namespace solo::launch
