// Session: the launcher command line, mpirun's failure lines, and end-to-end runs of
// tests/session_probe.cc under flavors of 1, 2 and 4 CPU devices, a bad flavor, a rank that
// dies, a host that does not answer and a PATH without mpirun.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "solo/cluster/inventory.h"
#include "solo/core/error.h"
#include "solo/session/launch.h"
#include "solo/session/session.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace solo;

namespace {

// Sets (or, with nullopt, unsets) environment variables and restores them on scope exit.
class EnvGuard {
 public:
  void set(const std::string& name, const std::optional<std::string>& value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value)
      ::setenv(name.c_str(), value->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
  ~EnvGuard() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "solo-test-session-XXXXXX").string();
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// An executable script `dir/name` that does nothing: a stand-in launcher found on PATH.
std::string fake_executable(const fs::path& dir, const std::string& name) {
  const fs::path p = dir / name;
  std::ofstream(p) << "#!/bin/sh\nexit 0\n";
  fs::permissions(p, fs::perms::owner_all);
  return p.string();
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string cpu4_threads() {
  return std::to_string(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN) / 4));
}

TEST(LauncherCommand, MpirunWithHostfileForCpu4) {
  TempDir dir;
  EnvGuard env;
  env.set("PATH", dir.path.string());
  env.set("SLURM_JOB_ID", std::nullopt);
  env.set("SOLO_JOB_ID", "test-7");
  const std::string mpirun = fake_executable(dir.path, "mpirun");
  const auto inv = cluster::default_inventory();
  const auto& f = inv.flavor("cpu-4");
  const auto cmd = launcher_command(inv, f, {"/abs/prog", "--steps", "3"}, "/tmp/x/hostfile");

  std::vector<std::string> expected{mpirun, "-np", "4", "--hostfile", "/tmp/x/hostfile"};
  if (::geteuid() == 0) expected.push_back("--allow-run-as-root");
  for (const char* a :
       {"--oversubscribe", "--bind-to", "none", "--mca", "orte_abort_on_non_zero_status", "1", "-x",
        "SOLO_FLAVOR=cpu-4", "-x", "SOLO_JOB_ID=test-7", "-x"})
    expected.push_back(a);
  expected.push_back("OMP_NUM_THREADS=" + cpu4_threads());
  for (const char* a : {"-x", "SOLO_LAUNCH_MARKERS=1", "/abs/prog", "--steps", "3"})
    expected.push_back(a);
  EXPECT_EQ(cmd, expected);
}

TEST(LauncherCommand, SlurmAllocationUsesSrun) {
  TempDir dir;
  EnvGuard env;
  const std::string srun = fake_executable(dir.path, "srun");
  env.set("PATH", dir.path.string() + ":" + std::getenv("PATH"));
  env.set("SLURM_JOB_ID", "4242");
  env.set("SOLO_JOB_ID", std::nullopt);
  const auto inv = cluster::default_inventory();
  const auto cmd = launcher_command(inv, inv.flavor("cpu-4"), {"/abs/prog"}, "/tmp/x/hostfile");
  const std::vector<std::string> expected{
      srun,
      "-n",
      "4",
      "--kill-on-bad-exit=1",
      "--export=ALL,SOLO_FLAVOR=cpu-4,OMP_NUM_THREADS=" + cpu4_threads() + ",SOLO_LAUNCH_MARKERS=1",
      "/abs/prog"};
  EXPECT_EQ(cmd, expected);
}

TEST(LauncherCommand, SrunOutsideAnAllocationIsNotUsed) {
  TempDir dir;
  EnvGuard env;
  fake_executable(dir.path, "srun");
  const std::string mpirun = fake_executable(dir.path, "mpirun");
  env.set("PATH", dir.path.string());
  env.set("SLURM_JOB_ID", std::nullopt);
  const auto inv = cluster::default_inventory();
  const auto cmd = launcher_command(inv, inv.flavor("cpu-2"), {"/abs/prog"}, "/h");
  ASSERT_FALSE(cmd.empty());
  EXPECT_EQ(cmd[0], mpirun);
  EXPECT_EQ(cmd[2], "2");
}

TEST(LauncherCommand, MissingMpirunNamesThePackage) {
  EnvGuard env;
  env.set("PATH", "/nonexistent");
  env.set("SLURM_JOB_ID", std::nullopt);
  const auto inv = cluster::default_inventory();
  try {
    launcher_command(inv, inv.flavor("cpu-2"), {"/abs/prog"}, "/h");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("mpirun not found"), std::string::npos) << msg;
    EXPECT_NE(msg.find("openmpi-bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find("solo switch cpu-1"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(DeviceBinding, EachRankSeesItsOwnGpu) {
  EXPECT_EQ(launch::visible_devices_for("cpu", 3, nullptr), "");
  EXPECT_EQ(launch::visible_devices_for("h100", 3, nullptr), "3");
  EXPECT_EQ(launch::visible_devices_for("h100", 0, ""), "0");
  EXPECT_EQ(launch::visible_devices_for("h100", 1, "4,6,7"), "6");
  EXPECT_EQ(launch::visible_devices_for("h100", 2, "GPU-aa,GPU-bb,GPU-cc"), "GPU-cc");
  EXPECT_THROW(launch::visible_devices_for("h100", 3, "4,6,7"), Error);
}

// Lines as Open MPI 4.1's mpirun prints them.
TEST(FailureParser, RankKilledBySignal) {
  launch::FailureParser p;
  p.feed("--------------------------------------------------------------------------");
  p.feed("mpirun noticed that process rank 3 with PID 0 on node vm exited on signal 9 (Killed).");
  EXPECT_EQ(p.describe(137), "the job ended: rank 3 was killed by signal 9 (Killed)");
}

TEST(FailureParser, RankExitedNonZero) {
  launch::FailureParser p;
  p.feed("mpirun detected that one or more processes exited with non-zero status, thus causing");
  p.feed("the job to be terminated. The first process to do so was:");
  p.feed("");
  p.feed("  Process name: [[32031,1],12]");
  p.feed("  Exit code:    3");
  p.feed("  Process name: [[32031,1],5]");
  EXPECT_EQ(p.describe(3), "the job ended: rank 12 exited with status 3");
}

TEST(FailureParser, SrunTaskExit) {
  launch::FailureParser p;
  p.feed("srun: error: node7: task 2: Exited with exit code 4");
  EXPECT_EQ(p.describe(4), "the job ended: rank 2 exited with status 4");
}

TEST(FailureParser, NoRankNamed) {
  launch::FailureParser p;
  p.feed("some unrelated output");
  EXPECT_EQ(p.describe(5), "the job ended with status 5");
}

// ---- End to end: session_probe under real flavors ----

struct ProbeRun {
  int exit_code = -1;  // 128 + signal when signalled
  bool timed_out = false;
  double seconds = 0;
  bool leftovers = false;  // processes of the job still alive 5 s after it ended
  std::string out, err;
};

fs::path probe_path() {
  return fs::read_symlink("/proc/self/exe").parent_path() / "session_probe";
}

// Runs session_probe with `args` in a clean environment: no MPI or Slurm variables from the
// caller, HOME in a temporary directory (so no user inventory or saved flavor), plus `vars`.
// With `term_after`, once stderr shows it the launching process gets `term_signal`, or
// `act` is called with its pid instead.
ProbeRun run_probe(const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& vars, const fs::path& home,
                   int timeout_s = 120, const std::string& term_after = "",
                   int term_signal = SIGTERM, const std::function<void(pid_t)>& act = {}) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool drop = false;
    for (const char* prefix : {"OMPI_", "PMIX_", "PMI_", "SLURM_", "SOLO_", "HOME=", "XDG_"})
      drop = drop || kv.starts_with(prefix);
    if (!drop && !vars.count(kv.substr(0, kv.find('=')))) env.push_back(kv);
  }
  env.push_back("HOME=" + home.string());
  for (const auto& [k, v] : vars) env.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  const std::string exe = probe_path().string();
  std::vector<std::string> argv_s{exe};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  EXPECT_EQ(::pipe(out_pipe), 0);
  EXPECT_EQ(::pipe(err_pipe), 0);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);  // so that a timeout can kill mpirun and the ranks too
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    ::execve(exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ProbeRun run;
  const auto deadline = start + std::chrono::seconds(timeout_s);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_pipes = 2;
  bool term_sent = false;
  while (open_pipes > 0) {
    // SIGTERM to the launching process only, as a service manager would send it.
    if (!term_after.empty() && !term_sent && run.err.find(term_after) != std::string::npos) {
      if (act)
        act(pid);
      else
        ::kill(pid, term_signal);
      term_sent = true;
      run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      run.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  // With term_after, `seconds` is the time from SIGTERM to the end.
  run.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() - run.seconds;
  if (!term_after.empty() && !term_sent) run.seconds = -1;
  // Nothing the job started (mpirun, ranks) may outlive it.
  for (int i = 0; i < 50 && ::kill(-pid, 0) == 0; ++i) ::usleep(100 * 1000);
  run.leftovers = ::kill(-pid, 0) == 0;
  if (run.leftovers) ::kill(-pid, SIGKILL);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

bool have_mpirun() {
  return !launch::find_on_path("mpirun").empty();
}

TEST(SessionProbe, OneDeviceRunsInProcess) {
  TempDir home;
  const auto r = run_probe({}, {{"SOLO_FLAVOR", "cpu-1"}, {"SOLO_JOB_ID", "probe-42"}}, home.path);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "world=1 sum=1\n");
  EXPECT_NE(r.err.find("[info] [1/1] Connecting to device 0 on "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[info] Virtual accelerator is ready. Job probe-42.\n"), std::string::npos)
      << r.err;
}

// sum over ranks of (rank + 1) = N (N + 1) / 2; only rank 0's line reaches stdout.
void expect_job(int n) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const fs::path tmp = home.path / "tmp";
  fs::create_directories(tmp);
  const std::string flavor = "cpu-" + std::to_string(n);
  const auto r = run_probe({}, {{"SOLO_FLAVOR", flavor}, {"TMPDIR", tmp.string()}}, home.path);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "world=" + std::to_string(n) + " sum=" + std::to_string(n * (n + 1) / 2) + "\n")
      << r.err;
  EXPECT_NE(r.err.find("[info] Requesting resources for the virtual accelerator (flavor " + flavor +
                       ": " + std::to_string(n) + " devices on 1 host)...\n"),
            std::string::npos)
      << r.err;
  for (int rank = 0; rank < n; ++rank) {
    const std::string line = "[info] [" + std::to_string(rank + 1) + "/" + std::to_string(n) +
                             "] Connecting to device " + std::to_string(rank) + " on ";
    EXPECT_EQ(count(r.err, line), 1u) << line << "\n" << r.err;
  }
  EXPECT_EQ(count(r.err, "[info] Virtual accelerator is ready. Job "), 1u) << r.err;
  EXPECT_EQ(count(r.err, "error"), 0u) << r.err;
  for (const auto& e : fs::directory_iterator(tmp))
    EXPECT_FALSE(e.path().filename().string().starts_with("solo-job-"))
        << "the hostfile directory was left behind: " << e.path();
}

TEST(SessionProbe, TwoDevices) {
  expect_job(2);
}
TEST(SessionProbe, FourDevices) {
  expect_job(4);
}

// Rank 0 records the job for `solo smi` while it runs and removes the record at the end.
TEST(SessionProbe, JobRecordLivesAsLongAsTheJob) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const auto r = run_probe({"jobs"}, {{"SOLO_FLAVOR", "cpu-2"}}, home.path);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count(r.err, "listed=1\n"), 1u) << r.err;
  // Both ranks reported at least the 1 MiB tensor each computed.
  const size_t at = r.err.find("memory=");
  ASSERT_NE(at, std::string::npos) << r.err;
  std::istringstream memory(r.err.substr(at + 7, r.err.find('\n', at) - at - 7));
  std::vector<int64_t> bytes;
  for (std::string b; std::getline(memory, b, ',');) bytes.push_back(std::stoll(b));
  ASSERT_EQ(bytes.size(), 2u) << r.err;
  for (int64_t b : bytes) EXPECT_GE(b, int64_t{1} << 20) << r.err;
  const fs::path jobs = home.path / ".cache" / "solo" / "jobs";
  ASSERT_TRUE(fs::is_directory(jobs));
  EXPECT_TRUE(fs::is_empty(jobs)) << "a job record outlived its job";
}

TEST(SessionProbe, UnknownFlavorListsFlavors) {
  TempDir home;
  const auto r = run_probe({}, {{"SOLO_FLAVOR", "cpu-3000"}}, home.path);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("cpu-3000"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cpu-1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cpu-4"), std::string::npos) << r.err;
}

TEST(SessionProbe, DeadRankEndsTheJobWithinTenSeconds) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const auto r = run_probe({"die-rank", "1"}, {{"SOLO_FLAVOR", "cpu-2"}}, home.path, 60);
  ASSERT_FALSE(r.timed_out) << "the job hung after rank 1 died\n" << r.err;
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_LT(r.seconds, 10.0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
  EXPECT_NE(r.err.find("error: the job ended: rank 1 "), std::string::npos) << r.err;
}

// A rank that stops (SIGSTOP) leaves the others waiting in a collective: the watchdog ends
// the job after SOLO_COLLECTIVE_TIMEOUT with one line naming the waiting rank and the call.
TEST(SessionProbe, StoppedRankEndsTheJobAfterTheCollectiveTimeout) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const auto r = run_probe(
      {"stop-rank"}, {{"SOLO_FLAVOR", "cpu-2"}, {"SOLO_COLLECTIVE_TIMEOUT", "3"}}, home.path, 60);
  ASSERT_FALSE(r.timed_out) << "the job hung after rank 1 stopped\n" << r.err;
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_LT(r.seconds, 15.0) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
  EXPECT_NE(r.err.find("error: rank 0 of 2 waited 3 s in all_reduce_sum"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("SOLO_COLLECTIVE_TIMEOUT"), std::string::npos) << r.err;
}

// The launching process killed with SIGKILL (as the OOM killer does) cannot forward
// anything: mpirun gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and ends the ranks, so no
// process of the job is left, and no hostfile either (it lives in a memfd).
TEST(SessionProbe, KilledLauncherLeavesNoProcessOrFileBehind) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const fs::path tmp = home.path / "tmp";
  fs::create_directories(tmp);
  const auto r = run_probe({"stall"}, {{"SOLO_FLAVOR", "cpu-2"}, {"TMPDIR", tmp.string()}},
                           home.path, 30, "Virtual accelerator is ready", SIGKILL);
  ASSERT_FALSE(r.timed_out) << "the job outlived its launcher\n" << r.err;
  ASSERT_GE(r.seconds, 0) << "the job never became ready\n" << r.err;
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
  EXPECT_LT(r.seconds, 10.0) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
  EXPECT_TRUE(fs::is_empty(tmp)) << "the job left files in TMPDIR";
}

// mpirun itself killed (by the OOM killer, say) is named as such, and its ranks end with it.
TEST(SessionProbe, KilledMpirunIsNamed) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  pid_t mpirun = 0;
  // mpirun runs below the launching process's launch keeper.
  const auto kill_mpirun = [&](pid_t launching) {
    std::map<pid_t, pid_t> parents;
    std::vector<pid_t> mpiruns;
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string pid = e.path().filename().string();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      const std::string stat = read_text(e.path() / "stat");
      const size_t close = stat.rfind(')');
      if (close == std::string::npos) continue;
      const auto p = static_cast<pid_t>(std::atoi(pid.c_str()));
      parents[p] = static_cast<pid_t>(std::atoi(stat.c_str() + close + 4));
      if (stat.find("(mpirun)") != std::string::npos) mpiruns.push_back(p);
    }
    for (pid_t p : mpiruns)
      if (parents[p] == launching || parents[parents[p]] == launching) mpirun = p;
    if (mpirun > 0) ::kill(mpirun, SIGKILL);
  };
  const auto r = run_probe({"stall"}, {{"SOLO_FLAVOR", "cpu-2"}}, home.path, 30,
                           "Virtual accelerator is ready", SIGKILL, kill_mpirun);
  ASSERT_GT(mpirun, 0) << "no mpirun under the launching process\n" << r.err;
  ASSERT_FALSE(r.timed_out) << "the job outlived mpirun\n" << r.err;
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
  EXPECT_NE(r.err.find("mpirun was killed by signal 9 (Killed); the job's ranks were stopped "
                       "with it"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(count(r.err, "error"), 1u) << r.err;
  EXPECT_LT(r.seconds, 10.0) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
}

TEST(SessionProbe, TermIsForwardedToTheJob) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const auto r = run_probe({"stall"}, {{"SOLO_FLAVOR", "cpu-2"}}, home.path, 30,
                           "Virtual accelerator is ready");
  ASSERT_FALSE(r.timed_out) << "the job ignored SIGTERM\n" << r.err;
  ASSERT_GE(r.seconds, 0) << "the job never became ready\n" << r.err;
  EXPECT_EQ(r.exit_code, 143) << r.err;  // 128 + SIGTERM, as a shell reports it
  EXPECT_NE(r.err.find("error: the job was interrupted (SIGTERM)"), std::string::npos) << r.err;
  EXPECT_LT(r.seconds, 10.0) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(SessionProbe, InterruptEndsTheJobWith130) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const auto r = run_probe({"stall"}, {{"SOLO_FLAVOR", "cpu-2"}}, home.path, 30,
                           "Virtual accelerator is ready", SIGINT);
  ASSERT_FALSE(r.timed_out) << "the job ignored SIGINT\n" << r.err;
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_NE(r.err.find("error: the job was interrupted (SIGINT)"), std::string::npos) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
}

// ---- A host that cannot be reached ----
//
// These tests send nothing off this host: the second host's address is on loopback
// (127.0.0.2, which Open MPI still starts over its remote shell, since no interface has
// it) and the remote shell is a stand-in agent (plm_rsh_agent) that records its pid and
// arguments, then hangs as ssh does towards a host that drops packets.

// An inventory of two hosts with one device each, "near" (this host) and "far".
fs::path two_host_inventory(const fs::path& dir) {
  const fs::path p = dir / "inventory.json";
  std::ofstream(p) << R"({"hosts": [
    {"name": "near", "address": "127.0.0.1", "device_kind": "h100", "device_count": 1},
    {"name": "far", "address": "127.0.0.2", "device_kind": "h100", "device_count": 1}],
  "flavors": [{"name": "two-hosts", "devices": 2, "device_kind": "h100"}]})";
  return p;
}

// A remote-shell agent that appends its pid to dir/agent.pid and its arguments to
// dir/agent.args, says "agent: started" on stderr, then never returns.
fs::path hanging_agent(const fs::path& dir) {
  const fs::path p = dir / "agent.sh";
  std::ofstream(p) << "#!/bin/sh\necho $$ >> '" << (dir / "agent.pid").string()
                   << "'\necho \"$*\" >> '" << (dir / "agent.args").string()
                   << "'\necho 'agent: started' >&2\nexec sleep 600\n";
  fs::permissions(p, fs::perms::owner_all);
  return p;
}

// Whether `pid` ends (or is a zombie, about to be reaped) within 5 s.
bool ends_soon(pid_t pid) {
  for (int i = 0; i < 50; ++i) {
    const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty() || stat.find(") Z") != std::string::npos) return true;
    ::usleep(100 * 1000);
  }
  return false;
}

TEST(LaunchTimeout, NamesTheHostsWhoseRanksDidNotStart) {
  launch::StartWatch w;
  w.timeout_s = 5;
  w.hosts = {{"near (127.0.0.1)", 2, false}, {"far (10.0.0.2)", 2, true}, {"farther", 1, true}};
  // No rank started: Open MPI waits for every remote daemon, so the remote hosts are named.
  EXPECT_EQ(launch::describe_start_timeout(w, {}),
            "hosts far (10.0.0.2), farther did not start their ranks within 5 s "
            "(SOLO_LAUNCH_TIMEOUT sets the limit): check that they can be reached with ssh (or "
            "Open MPI's plm_rsh_agent) without a password, and can connect back to this host");
  const std::string one = launch::describe_start_timeout(w, {0, 1, 4});
  EXPECT_TRUE(one.starts_with("host far (10.0.0.2) did not start its ranks within 5 s")) << one;
  const std::string all = launch::describe_start_timeout(w, {0, 1, 2, 3, 4});
  EXPECT_NE(all.find("ranks started but did not all connect within 5 s"), std::string::npos) << all;
}

TEST(LaunchTimeout, ReadFromTheEnvironment) {
  EnvGuard env;
  env.set("SOLO_LAUNCH_TIMEOUT", std::nullopt);
  EXPECT_EQ(launch::launch_timeout_from_env(), 120);
  env.set("SOLO_LAUNCH_TIMEOUT", "2.5");
  EXPECT_EQ(launch::launch_timeout_from_env(), 2.5);
  env.set("SOLO_LAUNCH_TIMEOUT", "0");
  EXPECT_EQ(launch::launch_timeout_from_env(), 0);
  for (const char* bad : {"-1", "nan", "5s", "inf"}) {
    env.set("SOLO_LAUNCH_TIMEOUT", bad);
    try {
      launch::launch_timeout_from_env();
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("SOLO_LAUNCH_TIMEOUT='" + std::string(bad) + "'"),
                std::string::npos)
          << e.what();
    }
  }
}

// kill_process_tree leaves no grandchild behind, not even one whose parent is stopped.
TEST(LaunchTimeout, KillProcessTreeEndsGrandchildren) {
  TempDir dir;
  const fs::path pids = dir.path / "pids";
  const pid_t child = ::fork();
  if (child == 0) {
    const std::string script = "sleep 600 & echo $! > '" + pids.string() + "'; wait";
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  pid_t grandchild = 0;
  for (int i = 0; i < 100 && grandchild == 0; ++i) {
    ::usleep(50 * 1000);
    std::ifstream(pids) >> grandchild;
  }
  ASSERT_GT(grandchild, 0);
  launch::kill_process_tree(child);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(ends_soon(grandchild)) << "pid " << grandchild << " outlived kill_process_tree";
}

// The host "far" never answers: the job ends after SOLO_LAUNCH_TIMEOUT with one line naming
// it, exit status 1, and neither mpirun nor the agent is left running.
TEST(SessionProbe, UnreachableHostEndsTheJobAfterTheLaunchTimeout) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const auto r = run_probe({},
                           {{"SOLO_INVENTORY", two_host_inventory(home.path).string()},
                            {"SOLO_FLAVOR", "two-hosts"},
                            {"SOLO_LAUNCH_TIMEOUT", "3"},
                            {"OMPI_MCA_plm_rsh_agent", hanging_agent(home.path).string()}},
                           home.path, 60);
  ASSERT_FALSE(r.timed_out) << "the job hung on the unreachable host\n" << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_GE(r.seconds, 3.0) << r.err;
  EXPECT_LT(r.seconds, 13.0) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
  EXPECT_EQ(r.out, "");
  // Open MPI did try to start far's daemon through the agent, and only far's.
  const std::string args = read_text(home.path / "agent.args");
  EXPECT_NE(args.find("127.0.0.2"), std::string::npos) << args;
  EXPECT_EQ(args.find("127.0.0.1"), std::string::npos) << args;
  pid_t agent = 0;
  std::ifstream(home.path / "agent.pid") >> agent;
  ASSERT_GT(agent, 0) << "the agent never ran\n" << r.err;
  EXPECT_TRUE(ends_soon(agent)) << "the remote-shell agent (pid " << agent << ") outlived the job";
  EXPECT_NE(r.err.find("error: host far (127.0.0.2) did not start its ranks within 3 s "
                       "(SOLO_LAUNCH_TIMEOUT sets the limit)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(count(r.err, "error"), 1u) << r.err;
  EXPECT_EQ(count(r.err, "solo-launch:"), 0u) << r.err;
}

// An interrupt while the job waits for the host ends it at once, agent included.
TEST(SessionProbe, InterruptWhileAHostDoesNotAnswerLeavesNoAgent) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const auto r = run_probe({},
                           {{"SOLO_INVENTORY", two_host_inventory(home.path).string()},
                            {"SOLO_FLAVOR", "two-hosts"},
                            {"OMPI_MCA_plm_rsh_agent", hanging_agent(home.path).string()}},
                           home.path, 60, "agent: started", SIGINT);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_LT(r.seconds, 10.0) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
  pid_t agent = 0;
  std::ifstream(home.path / "agent.pid") >> agent;
  if (agent > 0) {
    EXPECT_TRUE(ends_soon(agent)) << "the agent (pid " << agent << ") outlived the job";
  }
}

// The pids of the live processes whose environment has HOME=`home`: those of the job that
// run_probe started with that HOME (mpirun, its remote-shell agents, the ranks).
std::vector<pid_t> processes_with_home(const fs::path& home) {
  const std::string want = "HOME=" + home.string();
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_text(e.path() / "stat");
    if (stat.empty() || stat.find(") Z") != std::string::npos) continue;
    // NUL-separated NAME=VALUE entries, framed with NULs so that each one can be matched whole.
    const std::string env = '\0' + read_text(e.path() / "environ") + '\0';
    if (env.find('\0' + want + '\0') != std::string::npos)
      out.push_back(static_cast<pid_t>(std::atoi(pid.c_str())));
  }
  return out;
}

// The launching process killed with SIGKILL while a host's remote-shell agent still hangs:
// mpirun alone would end and leave the agent behind; the launch keeper between them ends
// everything mpirun started. Within 10 s no process of the job is left (the agent, mpirun)
// and no file of the job either.
TEST(SessionProbe, KilledLauncherWhileAHostDoesNotAnswerLeavesNoAgent) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (Debian's openmpi-bin)";
  TempDir home;
  const fs::path tmp = home.path / "tmp";
  fs::create_directories(tmp);
  const auto r = run_probe({},
                           {{"SOLO_INVENTORY", two_host_inventory(home.path).string()},
                            {"SOLO_FLAVOR", "two-hosts"},
                            {"TMPDIR", tmp.string()},
                            {"OMPI_MCA_plm_rsh_agent", hanging_agent(home.path).string()}},
                           home.path, 30, "agent: started", SIGKILL);
  ASSERT_GE(r.seconds, 0) << "the agent never started\n" << r.err;
  // The agent holds the job's stderr: run_probe returns once it is gone.
  ASSERT_FALSE(r.timed_out) << "the job outlived its launcher\n" << r.err;
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
  EXPECT_LT(r.seconds, 10.0) << r.err;
  EXPECT_FALSE(r.leftovers) << "processes of the job outlived it\n" << r.err;
  pid_t agent = 0;
  std::ifstream(home.path / "agent.pid") >> agent;
  ASSERT_GT(agent, 0) << "the agent never ran\n" << r.err;
  EXPECT_TRUE(ends_soon(agent)) << "the remote-shell agent (pid " << agent
                                << ") outlived its launcher";
  const auto left = processes_with_home(home.path);
  EXPECT_TRUE(left.empty()) << left.size() << " processes of the job (pid " << left.front()
                            << ") outlived its launcher";
  EXPECT_TRUE(fs::is_empty(tmp)) << "the job left files in TMPDIR";
}

TEST(SessionProbe, NoMpirunOnPath) {
  TempDir home;
  const auto r = run_probe({}, {{"SOLO_FLAVOR", "cpu-2"}, {"PATH", "/nonexistent"}}, home.path);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("error: mpirun not found: install Debian's openmpi-bin"), std::string::npos)
      << r.err;
  EXPECT_EQ(count(r.err, "\n"), 2u) << r.err;  // the request line and the error
}

}  // namespace
