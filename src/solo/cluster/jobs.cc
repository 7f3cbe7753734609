#include "solo/cluster/jobs.h"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "solo/cluster/inventory.h"
#include "solo/core/atomic_file.h"
#include "solo/core/error.h"

namespace solo::cluster {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void check_job_id(const std::string& id) {
  bool ok = !id.empty() && id != "." && id != ".." && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  SOLO_CHECK(ok, "job id '", id, "' is not usable as a file name; use letters, digits, '-', '_'");
}

std::string record_path(const std::string& job_id) {
  return jobs_dir() + "/" + job_id + ".json";
}

// EPERM means the process exists but belongs to someone else: still alive.
bool alive(int64_t pid) {
  return pid > 0 && (kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

}  // namespace

std::string jobs_dir() {
  return user_cache_dir() + "/jobs";
}

std::string job_record_json(const JobRecord& r) {
  json j = {{"job_id", r.job_id},
            {"flavor", r.flavor},
            {"ranks", r.ranks},
            {"pid", r.pid},
            {"started", r.started},
            {"command", r.command},
            {"rank_memory_bytes", r.rank_memory_bytes}};
  return j.dump(2) + "\n";
}

JobRecord parse_job_record(const std::string& json_text, const std::string& source) {
  try {
    json j = json::parse(json_text);
    SOLO_CHECK(j.is_object(), source, ": a job record must be a JSON object");
    JobRecord r;
    r.job_id = j.at("job_id").get<std::string>();
    r.flavor = j.at("flavor").get<std::string>();
    r.ranks = j.at("ranks").get<int>();
    r.pid = j.at("pid").get<int64_t>();
    r.started = j.value("started", int64_t{0});
    r.command = j.value("command", std::string());
    if (j.contains("rank_memory_bytes")) {
      r.rank_memory_bytes = j.at("rank_memory_bytes").get<std::vector<int64_t>>();
    }
    return r;
  } catch (const json::exception& e) {
    SOLO_FAIL(source, ": malformed job record: ", e.what());
  }
}

void write_job_record(const JobRecord& record) {
  check_job_id(record.job_id);
  const std::string path = record_path(record.job_id);
  create_parent_directories(path);
  write_file_atomic(path, job_record_json(record));
}

void remove_job_record(const std::string& job_id) {
  check_job_id(job_id);
  std::error_code ec;
  fs::remove(record_path(job_id), ec);
}

std::vector<JobRecord> list_job_records() {
  std::vector<JobRecord> out;
  std::error_code ec;
  fs::directory_iterator it(jobs_dir(), ec);
  if (ec) return out;  // no jobs directory yet: no jobs
  for (const auto& entry : it) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::ostringstream os;
    os << in.rdbuf();
    JobRecord r;
    try {
      r = parse_job_record(os.str(), entry.path().string());
    } catch (const Error&) {
      continue;  // written atomically, so a bad file is foreign: leave it alone
    }
    if (!alive(r.pid)) {
      fs::remove(entry.path(), ec);
      continue;
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const JobRecord& a, const JobRecord& b) {
    return a.started != b.started ? a.started < b.started : a.job_id < b.job_id;
  });
  return out;
}

}  // namespace solo::cluster
