#include "solo/comm/watchdog.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "solo/core/error.h"

namespace solo::comm {

double collective_timeout_seconds() {
  const char* env = std::getenv("SOLO_COLLECTIVE_TIMEOUT");
  if (!env || !*env) return 300;
  char* end = nullptr;
  const double s = std::strtod(env, &end);
  SOLO_CHECK(end && *end == '\0' && s >= 0 && s < 1e9, "SOLO_COLLECTIVE_TIMEOUT='", env,
             "' is not a number of seconds >= 0 (0 turns the watch off)");
  return s;
}

CollectiveWatchdog::CollectiveWatchdog(int rank, int size, double timeout_s)
    : rank_(rank), size_(size), timeout_(timeout_s) {
  if (timeout_s > 0) thread_ = std::thread([this] { run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

CollectiveWatchdog::Scope::Scope(CollectiveWatchdog& w, const char* op, size_t bytes) : w_(w) {
  if (!w_.thread_.joinable()) return;
  std::lock_guard<std::mutex> lock(w_.mutex_);
  w_.op_ = op;
  w_.bytes_ = bytes;
  w_.since_ = std::chrono::steady_clock::now();
}

CollectiveWatchdog::Scope::~Scope() {
  if (!w_.thread_.joinable()) return;
  std::lock_guard<std::mutex> lock(w_.mutex_);
  w_.op_ = nullptr;
}

void CollectiveWatchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::milliseconds(200));
    if (stop_ || !op_) continue;
    const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - since_;
    if (waited < timeout_) continue;
    // The main thread is stuck inside the library: say why and end the process from here.
    char line[512];
    const int n = std::snprintf(
        line, sizeof line,
        "error: rank %d of %d waited %.0f s in %s (%zu bytes) for the other ranks: one of them "
        "stopped making progress (stopped, deadlocked, or in another collective); "
        "SOLO_COLLECTIVE_TIMEOUT=%.0f s sets this limit\n",
        rank_, size_, waited.count(), op_, bytes_, timeout_.count());
    if (n > 0) (void)!::write(STDERR_FILENO, line, static_cast<size_t>(n));
    std::_Exit(124);
  }
}

}  // namespace solo::comm
