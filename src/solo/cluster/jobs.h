// Records of running Solo jobs, one JSON file per job in $XDG_CACHE_HOME/solo/jobs (else
// ~/.cache/solo/jobs), so that `solo smi` can list them. The Session writes a record when a
// job starts (and again as memory figures change) and removes it when the job ends; a record
// whose process has died without removing it is deleted by the next list_job_records().
// Format (docs/inventory.md): {"job_id": "...", "flavor": "cpu-4", "ranks": 4, "pid": 1234,
// "pid_start": 123456, "started": 1700000000, "command": "train_llama --steps 10",
// "rank_memory_bytes": [...]}.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace solo::cluster {

struct JobRecord {
  std::string job_id;  // also the file name: letters, digits, '-', '_', '.'
  std::string flavor;
  int ranks = 1;
  int64_t pid = 0;      // the launching (or single) process; the job is alive while it is
  int64_t started = 0;  // Unix time, seconds
  // When `pid` started (clock ticks after boot, /proc/<pid>/stat), so that another process
  // given the same pid later is not taken for the job. 0: unknown (write_job_record sets it).
  int64_t pid_start = 0;
  std::string command;                     // the command line, space-joined
  std::vector<int64_t> rank_memory_bytes;  // per rank, as last reported; may be empty
};

// $XDG_CACHE_HOME/solo/jobs or ~/.cache/solo/jobs.
std::string jobs_dir();
// Writes (or replaces) the record atomically.
void write_job_record(const JobRecord& record);
// Removes the record; no error when it is already gone.
void remove_job_record(const std::string& job_id);
// The records of live jobs, oldest first; records of dead processes are deleted, unreadable
// ones skipped.
std::vector<JobRecord> list_job_records();
// The start time of a process in clock ticks after boot, or 0 when it does not exist.
int64_t process_start_ticks(int64_t pid);
// Parses one record (for tests and tools); `source` names it in errors.
JobRecord parse_job_record(const std::string& json_text, const std::string& source);
std::string job_record_json(const JobRecord& record);

}  // namespace solo::cluster
