// A directory replaced as a whole (a checkpoint): its new contents are written into a fresh
// hidden directory beside the target, ".<name>.new.<host>.<pid>.<n>.<hex>", which commit()
// swaps in with renameat2(RENAME_EXCHANGE) and then removes (it then holds the old contents).
// A kill at any moment leaves the old or the new directory complete at the target path.
//
// Where the file system cannot exchange, commit() renames the old directory aside to
// ".<name>.old.<host>.<pid>.<n>.<hex>" and the new one into place: a kill between those two
// renames leaves the old directory only under its aside name, and the next StagedDirectory of
// the same target (on this host) renames it back. Stale ".new." / ".old." directories of dead
// processes of this host are removed the same way, so they never accumulate.
#pragma once
#include <functional>
#include <string>

namespace solo::io {

class StagedDirectory {
 public:
  // Creates the staging directory beside `target` (and the parents of `target`). A symlink at
  // `target` is followed: the directory it points to is the one replaced.
  explicit StagedDirectory(const std::string& target);
  // Removes the staging directory unless commit() succeeded.
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  // Where to write the new contents (files written with core/atomic_file.h are fsync'd).
  const std::string& path() const { return stage_; }
  const std::string& target() const { return target_; }

  // Links (or copies) into the new directory the entries of the old one that it lacks and
  // for which keep_old(name) is true, fsyncs it, swaps it in, fsyncs the parent and removes
  // the old contents. Throws naming the target and the cause; the target is then unchanged.
  void commit(const std::function<bool(const std::string& name)>& keep_old);

 private:
  std::string target_;
  std::string parent_;
  std::string name_;
  std::string stage_;
  bool committed_ = false;
};

}  // namespace solo::io
