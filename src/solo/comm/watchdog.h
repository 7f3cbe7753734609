// No hang when a rank stops making progress (stopped, deadlocked, or calling another
// collective than the others): every blocking call of a host communicator is watched, and one
// that waits longer than the timeout ends this process with one line naming the rank, the
// call and how long it waited, as NCCL's watchdog does. The launcher then ends the job, since
// a rank exited with an error.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

namespace solo::comm {

// SOLO_COLLECTIVE_TIMEOUT in seconds (default 300; 0 turns the watch off); a value that is
// not a non-negative number is an error naming the variable.
double collective_timeout_seconds();

class CollectiveWatchdog {
 public:
  // timeout_s 0: nothing is watched and no thread runs.
  CollectiveWatchdog(int rank, int size, double timeout_s);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Watches the calling thread's blocking call while it lives.
  class Scope {
   public:
    Scope(CollectiveWatchdog& w, const char* op, size_t bytes);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CollectiveWatchdog& w_;
  };

 private:
  void run();
  const int rank_, size_;
  const std::chrono::duration<double> timeout_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const char* op_ = nullptr;  // the call being watched, or null
  size_t bytes_ = 0;
  std::chrono::steady_clock::time_point since_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace solo::comm
