#include "solo/cluster/jobs.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "cluster_test_env.h"
#include "solo/core/error.h"

namespace {

namespace fs = std::filesystem;
using solo::cluster::JobRecord;
using solo::testing::EnvGuard;
using solo::testing::read_text;
using solo::testing::TempDir;
using solo::testing::write_text;

class Jobs : public ::testing::Test {
 protected:
  void SetUp() override { env_.set("XDG_CACHE_HOME", cache_.path()); }
  TempDir cache_;
  EnvGuard env_;
};

JobRecord live(const std::string& id, int64_t started) {
  JobRecord r;
  r.job_id = id;
  r.flavor = "cpu-4";
  r.ranks = 4;
  r.pid = getpid();
  r.started = started;
  r.command = "train_llama --steps 3";
  r.rank_memory_bytes = {1, 2, 3, int64_t{5} << 32};
  return r;
}

TEST_F(Jobs, DirectoryFollowsXdgCacheHome) {
  EXPECT_EQ(solo::cluster::jobs_dir(), cache_.path() + "/solo/jobs");
  EXPECT_TRUE(solo::cluster::list_job_records().empty());  // no directory yet
}

TEST_F(Jobs, WriteListRemove) {
  solo::cluster::write_job_record(live("b", 200));
  solo::cluster::write_job_record(live("a", 100));
  auto jobs = solo::cluster::list_job_records();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].job_id, "a");  // oldest first
  EXPECT_EQ(jobs[1].job_id, "b");
  EXPECT_EQ(jobs[0].flavor, "cpu-4");
  EXPECT_EQ(jobs[0].ranks, 4);
  EXPECT_EQ(jobs[0].pid, getpid());
  EXPECT_EQ(jobs[0].started, 100);
  EXPECT_EQ(jobs[0].command, "train_llama --steps 3");
  EXPECT_EQ(jobs[0].rank_memory_bytes, (std::vector<int64_t>{1, 2, 3, int64_t{5} << 32}));
  // Rewriting replaces the record.
  JobRecord updated = live("a", 100);
  updated.rank_memory_bytes = {7};
  solo::cluster::write_job_record(updated);
  jobs = solo::cluster::list_job_records();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].rank_memory_bytes, std::vector<int64_t>{7});
  solo::cluster::remove_job_record("a");
  solo::cluster::remove_job_record("a");  // already gone: fine
  jobs = solo::cluster::list_job_records();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].job_id, "b");
  EXPECT_FALSE(fs::exists(solo::cluster::jobs_dir() + "/a.json"));
}

TEST_F(Jobs, FileFormat) {
  solo::cluster::write_job_record(live("fmt", 42));
  std::string text = read_text(solo::cluster::jobs_dir() + "/fmt.json");
  for (const char* key : {"\"job_id\": \"fmt\"", "\"flavor\": \"cpu-4\"", "\"ranks\": 4",
                          "\"started\": 42", "\"rank_memory_bytes\""}) {
    EXPECT_NE(text.find(key), std::string::npos) << key << " in " << text;
  }
  JobRecord r = solo::cluster::parse_job_record(
      R"({"job_id": "x", "flavor": "gpu-2", "ranks": 2, "pid": 9, "started": 5,
          "command": "c", "rank_memory_bytes": [10, 20]})",
      "x.json");
  EXPECT_EQ(r.flavor, "gpu-2");
  EXPECT_EQ(r.pid, 9);
  EXPECT_EQ(r.rank_memory_bytes, (std::vector<int64_t>{10, 20}));
  EXPECT_THROW(solo::cluster::parse_job_record(R"({"job_id": "x"})", "x.json"), solo::Error);
}

TEST_F(Jobs, DeadJobsAreDeletedAndBadFilesSkipped) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);
  JobRecord dead = live("dead", 1);
  dead.pid = child;
  solo::cluster::write_job_record(dead);
  solo::cluster::write_job_record(live("alive", 2));
  write_text(solo::cluster::jobs_dir() + "/junk.json", "{not json");
  auto jobs = solo::cluster::list_job_records();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].job_id, "alive");
  EXPECT_FALSE(fs::exists(solo::cluster::jobs_dir() + "/dead.json"));
  EXPECT_TRUE(fs::exists(solo::cluster::jobs_dir() + "/junk.json"));
}

// A record whose pid now belongs to a process that started later (the pid was reused) is a
// dead job: not listed, and deleted.
TEST_F(Jobs, AReusedPidIsNotARunningJob) {
  const int64_t start = solo::cluster::process_start_ticks(getpid());
  ASSERT_GT(start, 0);
  EXPECT_EQ(solo::cluster::process_start_ticks(0), 0);
  JobRecord mine = live("mine", 1);  // this process: written with its own start time
  solo::cluster::write_job_record(mine);
  JobRecord reused = live("reused", 2);
  reused.pid_start = start - 1;  // "the job's process" started before this one had its pid
  solo::cluster::write_job_record(reused);
  auto jobs = solo::cluster::list_job_records();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].job_id, "mine");
  EXPECT_EQ(jobs[0].pid_start, start);
  EXPECT_FALSE(fs::exists(solo::cluster::jobs_dir() + "/reused.json"));
}

TEST_F(Jobs, RejectsIdsThatAreNotFileNames) {
  for (const char* id : {"", "a/b", "..", "x y"}) {
    JobRecord r = live(id, 1);
    EXPECT_THROW(solo::cluster::write_job_record(r), solo::Error) << id;
  }
}

}  // namespace
