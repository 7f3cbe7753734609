#include "solo/io/staged_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/core/fault_point.h"

namespace solo::io {

namespace fs = std::filesystem;

namespace {

// Another save of the same target may swap in between our attempts; each retry goes on top of
// the latest one.
constexpr int kSwapAttempts = 16;

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  std::string h(buf);
  for (char& c : h)
    if (c == '.' || c == '/') c = '_';  // the name is split at dots below
  return h;
}

// ".<name>.<kind>.<host>." : the prefix of this host's staging names of one kind.
std::string prefix_of(const std::string& name, const char* kind, const std::string& host) {
  return "." + name + "." + kind + "." + host + ".";
}

// The pid in "<prefix><pid>.<n>.<hex>", or 0 when the name is not of that form.
long pid_in(const std::string& entry, const std::string& prefix) {
  if (!entry.starts_with(prefix)) return 0;
  char* end = nullptr;
  const long pid = std::strtol(entry.c_str() + prefix.size(), &end, 10);
  return (pid > 0 && end && *end == '.') ? pid : 0;
}

bool alive(long pid) {
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// Both renames at once; false with errno set when the kernel or file system cannot.
bool exchange(const std::string& a, const std::string& b) {
  if (std::getenv("SOLO_TEST_NO_RENAME_EXCHANGE")) {  // tests the fallback on any file system
    errno = EINVAL;
    return false;
  }
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0;
}

bool rename_noreplace(const std::string& from, const std::string& to) {
  return ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0;
}

// Recovers from saves of this host's dead processes: an old directory left aside in the
// fallback's window goes back to the target if nothing replaced it; the rest is removed.
void clean_stale(const std::string& parent, const std::string& name, const std::string& target) {
  const std::string host = host_name();
  const std::string new_prefix = prefix_of(name, "new", host);
  const std::string old_prefix = prefix_of(name, "old", host);
  std::error_code ec;
  std::vector<fs::path> old_dirs, new_dirs;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string entry = e.path().filename().string();
    if (const long pid = pid_in(entry, old_prefix); pid && !alive(pid))
      old_dirs.push_back(e.path());
    if (const long pid = pid_in(entry, new_prefix); pid && !alive(pid))
      new_dirs.push_back(e.path());
  }
  for (const fs::path& p : old_dirs) {
    if (!fs::exists(target, ec) && rename_noreplace(p.string(), target)) continue;
    fs::remove_all(p, ec);
  }
  for (const fs::path& p : new_dirs) fs::remove_all(p, ec);
}

// Hard links where the file system allows (no bytes copied, the old files stay as they are),
// else a copy.
void carry_over(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  const auto opts = fs::copy_options::recursive | fs::copy_options::copy_symlinks;
  fs::copy(from, to, opts | fs::copy_options::create_hard_links, ec);
  if (!ec) return;
  std::error_code ignored;
  fs::remove_all(to, ignored);
  fs::copy(from, to, opts, ec);
  if (!ec) return;
  // Gone meanwhile: a concurrent save swapped the old directory out, keeping it in its own.
  if (!fs::exists(fs::symlink_status(from, ignored))) return;
  SOLO_FAIL("cannot save into ", from.parent_path().string(), ": cannot keep ", from.string(),
            " in the new directory: ", ec.message());
}

}  // namespace

StagedDirectory::StagedDirectory(const std::string& target) {
  std::error_code ec;
  fs::path t = fs::absolute(fs::path(target)).lexically_normal();
  if (!t.has_filename()) t = t.parent_path();  // "out/" names out
  if (fs::is_symlink(fs::symlink_status(t, ec))) {
    t = fs::canonical(t, ec);
    SOLO_CHECK(!ec, "cannot save into ", target, ": cannot resolve the symlink: ", ec.message(),
               "; point it at a directory or remove it");
  }
  ec.clear();
  SOLO_CHECK(!fs::exists(t, ec) || fs::is_directory(t, ec), "cannot save into ", target,
             ": it exists and is not a directory; name a directory");
  target_ = t.string();
  parent_ = t.parent_path().string();
  name_ = t.filename().string();
  fs::create_directories(parent_, ec);
  SOLO_CHECK(!ec, "cannot save into ", target, ": cannot create ", parent_, ": ", ec.message());
  clean_stale(parent_, name_, target_);
  int err = 0;
  for (int attempt = 0; attempt < kSwapAttempts; ++attempt) {
    stage_ = (fs::path(parent_) / (prefix_of(name_, "new", host_name()) + unique_name_suffix()))
                 .string();
    if (::mkdir(stage_.c_str(), 0755) == 0) return;
    err = errno;
    if (err != EEXIST) break;
  }
  SOLO_FAIL("cannot save into ", target, ": cannot create a directory beside it (", stage_,
            "): ", std::strerror(err), "; the parent directory must be writable");
}

StagedDirectory::~StagedDirectory() {
  std::error_code ec;
  if (!committed_) fs::remove_all(stage_, ec);
}

void StagedDirectory::commit(const std::function<bool(const std::string& name)>& keep_old) {
  SOLO_CHECK(!committed_, "cannot save into ", target_, ": already committed");
  std::error_code ec;
  if (fs::is_directory(target_, ec)) {
    std::error_code list_ec;
    for (auto it = fs::directory_iterator(target_, list_ec);
         !list_ec && it != fs::directory_iterator(); it.increment(list_ec)) {
      const std::string entry = it->path().filename().string();
      const fs::path dest = fs::path(stage_) / entry;
      std::error_code dest_ec;  // set when dest does not exist, the usual case
      if (!keep_old(entry) || fs::exists(fs::symlink_status(dest, dest_ec))) continue;
      carry_over(it->path(), dest);
    }
    SOLO_CHECK(!list_ec, "cannot save into ", target_,
               ": cannot list the old directory: ", list_ec.message());
  }
  fsync_directory(stage_);
  fault_point("save:staged");

  std::string old;  // where the old contents are after the swap, if there were any
  int err = 0;
  for (int attempt = 0; attempt < kSwapAttempts; ++attempt) {
    if (exchange(stage_, target_)) {
      old = stage_;
      break;
    }
    err = errno;
    if (err == ENOENT) {  // no old directory: a plain rename that refuses to replace
      if (rename_noreplace(stage_, target_)) {
        committed_ = true;
        break;
      }
      err = errno;
      if (err == EEXIST || err == ENOTEMPTY) continue;  // another save was first; swap with it
      break;
    }
    if (err != EINVAL && err != ENOSYS && err != ENOTSUP) break;
    // No exchange here: the old directory goes aside, then the new one into place.
    const std::string aside =
        (fs::path(parent_) / (prefix_of(name_, "old", host_name()) + unique_name_suffix()))
            .string();
    const bool moved = ::rename(target_.c_str(), aside.c_str()) == 0;
    err = errno;
    if (!moved && err != ENOENT) break;
    fault_point("save:old_aside");
    if (::rename(stage_.c_str(), target_.c_str()) == 0) {
      committed_ = true;
      if (moved) old = aside;
      break;
    }
    err = errno;
    // Put the old directory back; when another save took the place meanwhile, its complete
    // directory supersedes the old one.
    if (moved && !rename_noreplace(aside, target_) && (errno == EEXIST || errno == ENOTEMPTY))
      fs::remove_all(aside, ec);
    if (err != EEXIST && err != ENOTEMPTY) break;
  }
  if (!old.empty()) committed_ = true;
  SOLO_CHECK(committed_, "cannot save into ", target_, ": cannot move the new directory ", stage_,
             " into place: ", std::strerror(err));
  fault_point("save:swapped");
  fsync_directory(parent_);
  if (!old.empty()) fs::remove_all(old, ec);
  fault_point("save:old_removed");
}

}  // namespace solo::io
