// What the executor keeps between runs of one memory plan so that it can replay the plan's
// recorded work (a CUDA graph) instead of queueing every kernel again. A recording bakes in
// addresses, so:
//  - the plan's arena is kept between runs instead of going back to the backend;
//  - inputs that move between runs (a new batch, a step's learning rate) are copied into
//    slots the recording reads; outputs that are not written over donated inputs are computed
//    into slots and copied out into fresh storage, so earlier runs' outputs stay untouched;
//  - inputs that stay put (parameters and optimizer state updated in place) are read where
//    they are; when one moves, the plan is recorded again, at most kMaxRecordings times.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "solo/backend/backend.h"

namespace solo::runtime {

struct ReplayState {
  static constexpr int kMaxRecordings = 3;
  // Inputs up to this size are always staged: copying them costs less than re-recording.
  static constexpr size_t kSmallInputBytes = size_t{64} << 10;
  // Slots cost memory and a copy per run (microseconds per 10 MB on a GPU); launches matter
  // only while the GPU outruns the host, i.e. for models up to a few hundred million
  // parameters, whose gradients (outputs of every step) fit in this. Larger plans run eagerly.
  static constexpr size_t kMaxSlotBytes = size_t{1} << 30;

  int runs = 0;           // runs of the plan so far (eager, recorded or replayed)
  int recordings = 0;     // times the plan was recorded
  int replays = 0;        // runs served by replaying the recording
  bool disabled = false;  // recording failed, or would stage too much: run eagerly

  std::vector<const void*> previous;  // per value: the address an input had at the last run
  std::vector<const void*> direct;    // per value: where the recording reads an input in place
  std::vector<int64_t> slot;          // per value: its offset in `slots`, or -1
  std::unique_ptr<Storage> arena, slots;
  std::unique_ptr<Recording> recording;
};

}  // namespace solo::runtime
