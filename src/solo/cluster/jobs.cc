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

// EPERM means the process exists but belongs to someone else: still alive. A process that
// started at another time is another process that got the same pid.
bool alive(const JobRecord& r) {
  if (r.pid <= 0 || (kill(static_cast<pid_t>(r.pid), 0) != 0 && errno != EPERM)) return false;
  return r.pid_start == 0 || process_start_ticks(r.pid) == r.pid_start;
}

}  // namespace

int64_t process_start_ticks(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid ..." with comm free text: fields count from the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int k = 3; k <= 22 && fields >> field; ++k)
    if (k == 22) return std::strtoll(field.c_str(), nullptr, 10);  // starttime
  return 0;
}

std::string jobs_dir() {
  return user_cache_dir() + "/jobs";
}

std::string job_record_json(const JobRecord& r) {
  json j = {{"job_id", r.job_id},       {"flavor", r.flavor},
            {"ranks", r.ranks},         {"pid", r.pid},
            {"pid_start", r.pid_start}, {"started", r.started},
            {"command", r.command},     {"rank_memory_bytes", r.rank_memory_bytes}};
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
    r.pid_start = j.value("pid_start", int64_t{0});
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
  JobRecord r = record;
  if (r.pid_start == 0) r.pid_start = process_start_ticks(r.pid);
  write_file_atomic(path, job_record_json(r));
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
    if (!alive(r)) {
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
