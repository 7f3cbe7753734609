#include "solo/session/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
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

}  // namespace

JobEnd run_job(const std::vector<std::string>& cmd) {
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
  // fork + exec rather than posix_spawn, for the one thing spawn cannot set: the launcher
  // gets SIGTERM when this process dies (even by SIGKILL), and takes its ranks down with it.
  const pid_t parent = ::getpid();
  int exec_error[2];
  SOLO_CHECK(::pipe2(exec_error, O_CLOEXEC) == 0, "cannot create a pipe: ", std::strerror(errno));
  const pid_t pid = ::fork();
  SOLO_CHECK(pid >= 0, "cannot start ", cmd[0], ": fork failed: ", std::strerror(errno));
  if (pid == 0) {  // only async-signal-safe calls until exec
    ::close(exec_error[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the parent died before the prctl
    ::dup2(err_write.fd, STDERR_FILENO);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int signo : {SIGINT, SIGTERM, SIGCHLD}) ::sigaction(signo, &dfl, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    ::execve(cmd[0].c_str(), args.data(), environ);
    const int e = errno;
    (void)!::write(exec_error[1], &e, sizeof e);
    ::_exit(127);
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
  auto show = [&](const std::string& line) {
    parser.feed(line);
    const bool rule = line.size() >= 20 && line.find_first_not_of('-') == std::string::npos;
    if (rule) in_banner = !in_banner;
    if (rule || in_banner) return;  // Open MPI's account of the failure: we say it in one line
    if (line.starts_with("error: ")) {
      if (!errors_shown.insert(line).second) return;  // every rank failing alike
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
  int interrupted = 0;  // the SIGINT or SIGTERM forwarded to the job
  std::optional<int> wait_status;
  while (pipe_open || !wait_status) {
    pollfd fds[2] = {{err_read.fd, POLLIN, 0}, {sig.fd, POLLIN, 0}};
    // Once the launcher is gone, whatever still holds its stderr gets a short grace period.
    const int timeout_ms = wait_status ? 500 : -1;
    const int n = ::poll(pipe_open ? fds : fds + 1, pipe_open ? 2 : 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) break;
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
          if (!wait_status) ::kill(pid, signo);
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
  } else if (WIFSIGNALED(*wait_status)) {
    end.message = detail::concat("the launcher ", cmd[0], " was killed by signal ",
                                 WTERMSIG(*wait_status), " (", strsignal(WTERMSIG(*wait_status)),
                                 "); the job's ranks were stopped with it");
    end.cause_shown = false;
  }
  return end;
}

}  // namespace solo::launch
