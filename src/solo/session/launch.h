// Internals of the Session's relaunch: finding the launcher, running the job with its stderr
// passed through, and naming the rank that ended a failed job. Exposed for tests.
#pragma once
#include <sys/types.h>

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace solo::launch {

// Absolute path of the executable `name` on $PATH, or "" when there is none.
std::string find_on_path(const std::string& name);

// True inside a Slurm allocation that can start job steps (SLURM_JOB_ID set, srun on PATH).
bool in_slurm_allocation();

// This process's index among the job's ranks on its host, as the launcher tells it
// (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID), or nullopt outside a job.
std::optional<int> local_rank_from_env();

// This process's rank in its job, as the launcher tells it (OMPI_COMM_WORLD_RANK,
// SLURM_PROCID, PMI_RANK), or nullopt outside a job.
std::optional<int> rank_from_env();

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

// The lines with which ranks report their start to run_job on stderr (when the job's
// environment has SOLO_LAUNCH_MARKERS=1); run_job does not show them. Every rank prints
// kRankStarted followed by its rank as it starts, rank 0 prints kJobReady once every rank is
// connected.
inline constexpr std::string_view kRankStarted = "solo-launch: rank started ";
inline constexpr std::string_view kJobReady = "solo-launch: job ready";

// What run_job needs to end a job whose ranks do not all start: the time they have, and the
// hosts they run on, in rank order.
struct StartWatch {
  struct Host {
    std::string label;  // "far (10.0.0.2)"
    int ranks = 0;
    bool remote = false;  // started by the launcher over ssh (or Open MPI's plm_rsh_agent)
  };
  double timeout_s = 0;  // 0: no limit
  std::vector<Host> hosts;
};

// SOLO_LAUNCH_TIMEOUT in seconds (default 120; 0 turns the limit off); anything else that is
// not a number of seconds >= 0 is an error naming the variable.
double launch_timeout_from_env();

// The one line that says which hosts did not start their ranks in time, given the ranks that
// reported their start: the hosts none of whose ranks started (only the remote ones when no
// rank started at all, since Open MPI starts no rank before every host's daemon is up), or,
// when every rank started, that they did not connect to each other.
std::string describe_start_timeout(const StartWatch& watch, const std::set<int>& started);

// Kills `root` and every process below it (SIGKILL), the youngest first, so that nothing it
// started (a remote-shell agent that hangs, say) is left without a parent. It allocates
// nothing, so a forked child of a threaded process may call it.
void kill_process_tree(pid_t root);

// Runs `cmd` (cmd[0] an absolute path) with stdout inherited and stderr passed through,
// line by line, while it is scanned for failed ranks: Open MPI's banners (blocks between
// lines of dashes) are scanned but not shown, and an "error: ..." line that several ranks
// print alike (but for their rank numbers) is shown once. SIGINT and SIGTERM are forwarded to it.
// With a start timeout, a job that has not reported kJobReady in time is killed with everything it
// started and ends with status 1 and describe_start_timeout's line. `cmd` runs below a launch
// keeper that ends it and everything it started when this process dies, even by SIGKILL.
JobEnd run_job(const std::vector<std::string>& cmd, const StartWatch& watch = {});

}  // namespace solo::launch
