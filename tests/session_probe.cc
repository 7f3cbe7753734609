// A tiny Session program for tests/test_session.cc. Every rank prints "world=N sum=S" (the
// all-reduce of rank + 1), so more than one line on stdout means the Session failed to keep
// ranks other than 0 quiet.
//   session_probe                 run the all-reduce on the flavor of $SOLO_FLAVOR
//   session_probe die-rank R      rank R kills itself (SIGKILL) after a barrier; the others
//                                 wait in a collective that can never finish
//   session_probe stall           rank 0 sleeps for a minute while the others wait: a job to
//                                 interrupt
//   session_probe jobs            each rank computes a 1 MiB tensor and the ranks report their
//                                 memory; rank 0 then prints to stderr "listed=K", K the
//                                 number of job records that name this job with its rank
//                                 count, and "memory=B0,B1,..." from that record
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "solo/cluster/jobs.h"
#include "solo/session/session.h"

int main(int argc, char** argv) try {
  solo::Session session(argc, argv);
  auto& comm = session.comm();
  if (argc >= 3 && std::string(argv[1]) == "die-rank") {
    const int victim = std::atoi(argv[2]);
    comm.barrier();
    if (session.rank() == victim) ::raise(SIGKILL);
    comm.barrier();
  }
  if (argc >= 2 && std::string(argv[1]) == "jobs") {
    const solo::Tensor t = solo::Tensor::zeros({1 << 18}, solo::DType::F32, session.device()) + 1.0;
    solo::sync(session.device());
    session.report_memory();
    if (session.is_main()) {
      int listed = 0;
      std::string memory;
      for (const auto& r : solo::cluster::list_job_records()) {
        if (r.job_id != session.job_id() || r.ranks != session.world_size()) continue;
        ++listed;
        for (int64_t b : r.rank_memory_bytes) {
          if (!memory.empty()) memory += ',';
          memory += std::to_string(b);
        }
      }
      std::fprintf(stderr, "listed=%d\nmemory=%s\n", listed, memory.c_str());
    }
  }
  if (argc >= 2 && std::string(argv[1]) == "stop-rank") {  // rank 1 stops; the rest wait
    comm.barrier();
    if (session.rank() == 1) ::raise(SIGSTOP);
  }
  if (argc >= 2 && std::string(argv[1]) == "stall") {
    if (session.rank() == 0) std::this_thread::sleep_for(std::chrono::seconds(60));
    comm.barrier();
  }
  int32_t value = session.rank() + 1;
  comm.all_reduce_sum(&value, 1, solo::DType::I32);
  std::printf("world=%d sum=%d\n", session.world_size(), value);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
