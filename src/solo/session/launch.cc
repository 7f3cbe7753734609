#include "solo/session/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string_view>

#include "solo/core/error.h"

extern char** environ;

namespace solo::launch {

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  std::string_view rest(path);
  while (true) {
    const size_t colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    std::string candidate(dir.empty() ? std::string_view(".") : dir);
    candidate += '/';
    candidate += name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      if (candidate[0] == '/') return candidate;
      char* abs = ::realpath(candidate.c_str(), nullptr);
      std::string out = abs ? abs : candidate;
      std::free(abs);
      return out;
    }
    if (colon == std::string_view::npos) return "";
    rest.remove_prefix(colon + 1);
  }
}

bool in_slurm_allocation() {
  const char* job = std::getenv("SLURM_JOB_ID");
  return job != nullptr && *job != '\0' && !find_on_path("srun").empty();
}

std::optional<int> local_rank_from_env() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    const char* v = std::getenv(var);
    if (v && *v) return std::atoi(v);
  }
  return std::nullopt;
}

std::optional<int> rank_from_env() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "PMI_RANK"}) {
    const char* v = std::getenv(var);
    if (v && *v) return std::atoi(v);
  }
  return std::nullopt;
}

std::string visible_devices_for(const std::string& device_kind, int local_rank,
                                const char* inherited) {
  if (device_kind == "cpu") return "";
  if (inherited && *inherited) {
    std::vector<std::string> ids;
    std::string_view rest(inherited);
    while (true) {
      const size_t comma = rest.find(',');
      ids.emplace_back(rest.substr(0, comma));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    SOLO_CHECK(local_rank < static_cast<int>(ids.size()), "CUDA_VISIBLE_DEVICES=", inherited,
               " names ", ids.size(), " GPUs but this host runs ", local_rank + 1,
               " or more ranks: unset it or pick a flavor with fewer devices per host");
    return ids[static_cast<size_t>(local_rank)];
  }
  return std::to_string(local_rank);
}

namespace {

// The integer that follows `key` in `line`, if any.
std::optional<int> int_after(const std::string& line, const std::string& key) {
  const size_t at = line.find(key);
  if (at == std::string::npos) return std::nullopt;
  size_t i = at + key.size();
  while (i < line.size() && line[i] == ' ') ++i;
  size_t j = i;
  while (j < line.size() && line[j] >= '0' && line[j] <= '9') ++j;
  if (j == i) return std::nullopt;
  return std::atoi(line.substr(i, j - i).c_str());
}

}  // namespace

void FailureParser::feed(const std::string& line) {
  if (rank_) {
    // Open MPI names the rank and its exit code on separate lines.
    if (!exit_code_ && !signal_) exit_code_ = int_after(line, "Exit code:");
    return;
  }
  // "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed)."
  if (line.find("process rank ") != std::string::npos &&
      line.find("exited on signal") != std::string::npos) {
    rank_ = int_after(line, "process rank ");
    signal_ = int_after(line, "exited on signal");
    return;
  }
  // "  Process name: [[32031,1],1]" followed by "  Exit code:    3".
  const size_t at = line.find("Process name: [[");
  if (at != std::string::npos) {
    const size_t close = line.find("],", at);
    if (close != std::string::npos) rank_ = int_after(line.substr(close), "],");
    return;
  }
  // Slurm: "srun: error: node1: task 1: Killed" / "... task 1: Exited with exit code 3".
  if (line.find("srun: error:") != std::string::npos) {
    rank_ = int_after(line, "task ");
    if (!rank_) return;
    exit_code_ = int_after(line, "exit code");
    if (!exit_code_ && line.find("Killed") != std::string::npos) signal_ = SIGKILL;
  }
}

std::string FailureParser::describe(int status) const {
  if (!rank_) return detail::concat("the job ended with status ", status);
  if (signal_)
    return detail::concat("the job ended: rank ", *rank_, " was killed by signal ", *signal_, " (",
                          strsignal(*signal_), ")");
  if (exit_code_)
    return detail::concat("the job ended: rank ", *rank_, " exited with status ", *exit_code_);
  return detail::concat("the job ended: rank ", *rank_, " failed (launcher status ", status, ")");
}

namespace {

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // our stderr is gone; keep draining the child anyway
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

// Calls f(pid, ppid, state) for every process on this host, reading /proc with system calls
// alone and nothing allocated, so that the launch keeper (a forked child of a process that
// may have threads) can call it.
template <typename F>
void for_each_process(F&& f) {
  const int proc = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (proc < 0) return;
  alignas(8) char entries[8192];
  while (true) {
    const ssize_t n = ::getdents64(proc, entries, sizeof entries);
    if (n <= 0) break;
    for (ssize_t at = 0; at < n;) {
      const auto* e = reinterpret_cast<const dirent64*>(entries + at);
      at += e->d_reclen;
      pid_t pid = 0;
      const char* c = e->d_name;
      for (; *c >= '0' && *c <= '9'; ++c) pid = pid * 10 + (*c - '0');
      if (c == e->d_name || *c != '\0') continue;
      char path[32] = "/proc/";
      size_t len = 6;
      for (const char* d = e->d_name; *d && len < 20; ++d) path[len++] = *d;
      for (const char* d = "/stat"; *d; ++d) path[len++] = *d;
      path[len] = '\0';
      const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;  // ended meanwhile
      char stat[512];
      const ssize_t got = ::read(fd, stat, sizeof stat - 1);
      ::close(fd);
      if (got <= 0) continue;
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the
      // last ')'.
      ssize_t close = got - 1;
      while (close >= 0 && stat[close] != ')') --close;
      if (close < 0 || close + 4 >= got) continue;
      pid_t ppid = 0;
      for (ssize_t i = close + 4; i < got && stat[i] >= '0' && stat[i] <= '9'; ++i)
        ppid = ppid * 10 + (stat[i] - '0');
      f(pid, ppid, stat[close + 2]);
    }
  }
  ::close(proc);
}

// Every live process on this host with its parent (pid -> ppid), zombies too when asked.
std::map<pid_t, pid_t> live_parents(bool with_zombies = false) {
  std::map<pid_t, pid_t> out;
  for_each_process([&](pid_t pid, pid_t ppid, char state) {
    if ((state == 'Z' && !with_zombies) || state == 'X') return;
    out[pid] = ppid;
  });
  return out;
}

// A set of pids in fixed storage (no allocation), for kill_process_tree.
class PidSet {
 public:
  bool contains(pid_t pid) const {
    for (int i = 0; i < size_; ++i)
      if (pids_[i] == pid) return true;
    return false;
  }
  bool insert(pid_t pid) {
    if (size_ == kCapacity || contains(pid)) return false;
    pids_[size_++] = pid;
    return true;
  }
  const pid_t* begin() const { return pids_; }
  const pid_t* end() const { return pids_ + size_; }

 private:
  static constexpr int kCapacity = 4096;
  pid_t pids_[kCapacity];
  int size_ = 0;
};

// `line` with the number after each "rank " replaced by '#', so that the lines in which
// ranks report the same failure compare equal.
std::string without_rank_numbers(const std::string& line) {
  std::string out;
  for (size_t i = 0; i < line.size();) {
    if (line.compare(i, 5, "rank ") == 0 && i + 5 < line.size() && line[i + 5] >= '0' &&
        line[i + 5] <= '9') {
      out += "rank #";
      i += 5;
      while (i < line.size() && line[i] >= '0' && line[i] <= '9') ++i;
    } else {
      out += line[i++];
    }
  }
  return out;
}

}  // namespace

double launch_timeout_from_env() {
  const char* env = std::getenv("SOLO_LAUNCH_TIMEOUT");
  if (!env || !*env) return 120;
  char* end = nullptr;
  const double s = std::strtod(env, &end);
  SOLO_CHECK(end && *end == '\0' && s >= 0 && s < 1e9, "SOLO_LAUNCH_TIMEOUT='", env,
             "' is not a number of seconds >= 0 (0 turns the limit off)");
  return s;
}

std::string describe_start_timeout(const StartWatch& watch, const std::set<int>& started) {
  std::vector<const StartWatch::Host*> missing;
  int first = 0;
  for (const auto& h : watch.hosts) {
    bool any = false;
    for (int r = first; r < first + h.ranks; ++r) any = any || started.count(r) > 0;
    if (!any) missing.push_back(&h);
    first += h.ranks;
  }
  if (missing.empty())
    return detail::concat("the job's ranks started but did not all connect within ",
                          watch.timeout_s,
                          " s (SOLO_LAUNCH_TIMEOUT sets the limit): check that the hosts can "
                          "reach each other over TCP (a firewall?)");
  // Open MPI starts no rank before every host's daemon is up: the local ranks wait too.
  if (missing.size() == watch.hosts.size()) {
    std::vector<const StartWatch::Host*> remote;
    for (const auto* h : missing)
      if (h->remote) remote.push_back(h);
    if (!remote.empty()) missing = remote;
  }
  std::string names;
  for (const auto* h : missing) {
    if (!names.empty()) names += ", ";
    names += h->label;
  }
  const bool one = missing.size() == 1;
  return detail::concat(one ? "host " : "hosts ", names, " did not start ", one ? "its" : "their",
                        " ranks within ", watch.timeout_s,
                        " s (SOLO_LAUNCH_TIMEOUT sets the limit): check that ", one ? "it" : "they",
                        " can be reached with ssh (or Open MPI's plm_rsh_agent) without a "
                        "password, and can connect back to this host");
}

void kill_process_tree(pid_t root) {
  // Stop the tree from the root down, so that nothing in it starts more or is left without
  // its parent, then kill it all. Nothing here allocates: the launch keeper calls it.
  PidSet tree;
  tree.insert(root);
  ::kill(root, SIGSTOP);
  for (int round = 0; round < 100; ++round) {
    bool grew = false;
    for_each_process([&](pid_t pid, pid_t ppid, char state) {
      if (state == 'Z' || state == 'X' || !tree.contains(ppid) || !tree.insert(pid)) return;
      ::kill(pid, SIGSTOP);
      grew = true;
    });
    if (!grew && round > 0) break;
    ::usleep(2000);  // a fork under way when the stop arrived shows up in the next round
  }
  for (pid_t pid : tree) ::kill(pid, SIGKILL);
}

namespace {

// ---- The launch keeper ----
//
// A process between the launching process and the launcher (mpirun), forked without exec.
// It is the subreaper of everything the launcher starts, so what the launcher leaves behind
// when it ends (a remote-shell agent that hangs, say) becomes the keeper's child rather than
// init's; it learns of the launching process's death through PR_SET_PDEATHSIG, even when that
// was SIGKILL (the OOM killer), and then ends the launcher and all it left. It passes SIGINT
// and SIGTERM from the launching process on to the launcher and exits as the launcher did.
// It runs in a forked child of a process that may have threads: system calls only, nothing
// allocated.

struct KeeperArgs {
  pid_t launching = 0;  // the launching process
  char* const* argv = nullptr;
  int err_write = -1;   // becomes the launcher's stderr
  int exec_error = -1;  // the launcher's errno when its exec fails
  const sigset_t* launcher_mask = nullptr;
};

// Reaps every ended child; returns the launcher's wait status once it has ended.
void reap(pid_t launcher, int* launcher_status, bool* launcher_ended) {
  int status = 0;
  pid_t w;
  while ((w = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (w == launcher) {
      *launcher_status = status;
      *launcher_ended = true;
    }
  }
}

// Kills everything below the keeper (its children, the launcher's orphans among them, and
// theirs) and reaps it.
void end_descendants() {
  const pid_t self = ::getpid();
  for (int round = 0; round < 20; ++round) {
    bool any = false;
    for_each_process([&](pid_t pid, pid_t ppid, char state) {
      if (ppid != self) return;
      any = true;
      if (state != 'Z' && state != 'X') kill_process_tree(pid);
    });
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (!any) return;
    ::usleep(5000);
  }
}

[[noreturn]] void exit_as(int status) {
  if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
  const int signo = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // the launcher dumped its core already, if at all
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(signo, &dfl, nullptr);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, signo);
  ::pthread_sigmask(SIG_UNBLOCK, &only, nullptr);
  ::kill(::getpid(), signo);
  ::kill(::getpid(), SIGKILL);
  ::_exit(128 + signo);
}

[[noreturn]] void launch_keeper(const KeeperArgs& a) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != a.launching) ::_exit(127);  // the launching process died before the prctl
  // Signals the keeper waits for: the launching process's (and its death's), and its children's.
  sigset_t waited;
  sigemptyset(&waited);
  for (int signo : {SIGINT, SIGTERM, SIGCHLD, SIGHUP}) sigaddset(&waited, signo);
  ::pthread_sigmask(SIG_BLOCK, &waited, nullptr);
  const pid_t keeper = ::getpid();
  const pid_t launcher = ::fork();
  if (launcher < 0) ::_exit(127);
  if (launcher == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != keeper) ::_exit(127);
    ::dup2(a.err_write, STDERR_FILENO);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int signo : {SIGINT, SIGTERM, SIGCHLD}) ::sigaction(signo, &dfl, nullptr);
    ::pthread_sigmask(SIG_SETMASK, a.launcher_mask, nullptr);
    ::execve(a.argv[0], a.argv, environ);
    const int e = errno;
    (void)!::write(a.exec_error, &e, sizeof e);
    ::_exit(127);
  }
  ::close(a.exec_error);
  ::close(a.err_write);
  int status = 0;
  bool ended = false;
  while (true) {
    siginfo_t info;
    const timespec tick{1, 0};  // the launching process's death is also seen by polling
    const int signo = ::sigtimedwait(&waited, &info, &tick);
    reap(launcher, &status, &ended);
    if (::getppid() != a.launching) {
      // The launching process died: the launcher gets the SIGTERM it would have had from the
      // kernel and a few seconds to stop its ranks and remove its session files, then
      // everything below the keeper is killed.
      if (!ended) ::kill(launcher, SIGTERM);
      for (int i = 0; i < 150 && !ended; ++i) {
        ::usleep(20 * 1000);
        reap(launcher, &status, &ended);
      }
      end_descendants();  // the job's hostfile is a memfd: no file of the job is left
      ::_exit(128 + SIGKILL);
    }
    if (ended) {
      end_descendants();  // what the launcher left behind
      exit_as(status);
    }
    if ((signo == SIGINT || signo == SIGTERM) && info.si_pid == a.launching)
      ::kill(launcher, signo);
  }
}

}  // namespace

JobEnd run_job(const std::vector<std::string>& cmd, const StartWatch& watch) {
  SOLO_CHECK(!cmd.empty() && cmd[0].starts_with('/'), "run_job needs an absolute launcher path");
  // Signals go to a signalfd so that forwarding needs no global state in a handler.
  sigset_t handled, old_mask;
  sigemptyset(&handled);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &handled, &old_mask);
  struct RestoreMask {
    sigset_t mask;
    ~RestoreMask() { pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{old_mask};

  Fd sig{::signalfd(-1, &handled, SFD_CLOEXEC)};
  SOLO_CHECK(sig.fd >= 0, "cannot create a signalfd: ", std::strerror(errno));
  int pipe_fds[2];
  SOLO_CHECK(::pipe2(pipe_fds, O_CLOEXEC) == 0, "cannot create a pipe: ", std::strerror(errno));
  Fd err_read{pipe_fds[0]};
  Fd err_write{pipe_fds[1]};

  std::vector<char*> args;
  for (const auto& a : cmd) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The launcher runs below a launch keeper (above), which ends it and everything it started
  // when this process dies, even by SIGKILL.
  const pid_t parent = ::getpid();
  // Should the keeper itself be killed, whatever it leaves behind becomes this process's
  // child rather than init's, so that it can be ended below.
  std::set<pid_t> children_before;
  for (const auto& [p, pp] : live_parents())
    if (pp == parent) children_before.insert(p);
  int was_subreaper = 0;
  ::prctl(PR_GET_CHILD_SUBREAPER, &was_subreaper);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct RestoreSubreaper {
    int was;
    ~RestoreSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, was); }
  } restore_subreaper{was_subreaper};
  int exec_error[2];
  SOLO_CHECK(::pipe2(exec_error, O_CLOEXEC) == 0, "cannot create a pipe: ", std::strerror(errno));
  KeeperArgs keeper_args;
  keeper_args.launching = parent;
  keeper_args.argv = args.data();
  keeper_args.err_write = err_write.fd;
  keeper_args.exec_error = exec_error[1];
  keeper_args.launcher_mask = &old_mask;
  const pid_t pid = ::fork();
  SOLO_CHECK(pid >= 0, "cannot start ", cmd[0], ": fork failed: ", std::strerror(errno));
  if (pid == 0) {  // the keeper: only async-signal-safe calls from here on
    ::close(exec_error[0]);
    ::close(err_read.fd);
    ::close(sig.fd);
    launch_keeper(keeper_args);
  }
  ::close(exec_error[1]);
  int exec_errno = 0;
  const ssize_t got = ::read(exec_error[0], &exec_errno, sizeof exec_errno);
  ::close(exec_error[0]);
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    ::waitpid(pid, nullptr, 0);
    SOLO_FAIL("cannot start ", cmd[0], ": ", std::strerror(exec_errno));
  }
  ::close(err_write.fd);
  err_write.fd = -1;

  FailureParser parser;
  std::string partial;
  bool in_banner = false;
  std::set<std::string> errors_shown;
  bool cause_shown = false;
  std::set<int> started;  // ranks that reported their start
  bool ready = false;     // every rank connected
  auto show = [&](const std::string& line) {
    if (line.starts_with(kRankStarted)) {
      started.insert(std::atoi(line.c_str() + kRankStarted.size()));
      return;
    }
    if (line.starts_with(kJobReady)) {
      ready = true;
      return;
    }
    parser.feed(line);
    const bool rule = line.size() >= 20 && line.find_first_not_of('-') == std::string::npos;
    if (rule) in_banner = !in_banner;
    if (rule || in_banner) return;  // Open MPI's account of the failure: we say it in one line
    if (line.starts_with("error: ")) {
      // Every rank failing alike, though each may name itself ("on cpu rank 3").
      if (!errors_shown.insert(without_rank_numbers(line)).second) return;
      cause_shown = true;
    }
    write_all(STDERR_FILENO, line.data(), line.size());
    write_all(STDERR_FILENO, "\n", 1);
  };
  auto pass_through = [&](const char* data, size_t n) {
    partial.append(data, n);
    size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      show(partial.substr(0, nl));
      partial.erase(0, nl + 1);
    }
  };

  bool pipe_open = true;
  int interrupted = 0;        // the SIGINT or SIGTERM forwarded to the job
  bool start_failed = false;  // the ranks did not all start in time
  const auto start_deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(watch.timeout_s * 1000));
  std::optional<int> wait_status;
  while (pipe_open || !wait_status) {
    pollfd fds[2] = {{err_read.fd, POLLIN, 0}, {sig.fd, POLLIN, 0}};
    // Once the launcher is gone, whatever still holds its stderr gets a short grace period.
    int timeout_ms = wait_status ? 500 : -1;
    const bool watching = watch.timeout_s > 0 && !ready && !wait_status && !start_failed;
    if (watching) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          start_deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        start_failed = true;
        kill_process_tree(pid);
        continue;
      }
      timeout_ms = static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30));
    }
    const int n = ::poll(pipe_open ? fds : fds + 1, pipe_open ? 2 : 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && !watching) break;
    if (pipe_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[4096];
      const ssize_t r = ::read(err_read.fd, buf, sizeof buf);
      if (r > 0) {
        pass_through(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        pipe_open = false;
      }
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      if (::read(sig.fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        const int signo = static_cast<int>(info.ssi_signo);
        if (signo == SIGINT || signo == SIGTERM) {
          // Before its ranks are up, mpirun would leave a hanging remote-shell agent behind.
          if (!wait_status) {
            if (ready || watch.timeout_s <= 0)
              ::kill(pid, signo);
            else
              kill_process_tree(pid);
          }
          interrupted = signo;
        }
      }
    }
    if (!wait_status) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) wait_status = status;
    }
  }
  if (!wait_status) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    wait_status = status;
  }
  for (const auto& [p, pp] : live_parents(/*with_zombies=*/true)) {
    if (pp != parent || children_before.count(p)) continue;
    kill_process_tree(p);  // an orphan of the launcher's, or one already ended
    while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (!partial.empty()) show(partial);
  JobEnd end;
  end.cause_shown = cause_shown;
  end.status = WIFEXITED(*wait_status)
                   ? WEXITSTATUS(*wait_status)
                   : 128 + (WIFSIGNALED(*wait_status) ? WTERMSIG(*wait_status) : 0);
  if (end.status != 0) end.message = parser.describe(end.status);
  if (interrupted) {  // as a shell reports it: 128 + the signal
    end.status = 128 + interrupted;
    end.message = detail::concat("the job was interrupted (SIG", sigabbrev_np(interrupted),
                                 ") and its ranks stopped");
    end.cause_shown = false;
  } else if (start_failed) {
    end.status = 1;
    end.message = describe_start_timeout(watch, started);
    end.cause_shown = false;
  } else if (WIFSIGNALED(*wait_status)) {
    end.message = detail::concat("the launcher ", cmd[0], " was killed by signal ",
                                 WTERMSIG(*wait_status), " (", strsignal(WTERMSIG(*wait_status)),
                                 "); the job's ranks were stopped with it");
    end.cause_shown = false;
  }
  return end;
}

}  // namespace solo::launch
