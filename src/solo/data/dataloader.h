// Batching token files for training.
//
// Both follow Hugging Face semantics: labels == input_ids (-100 on padding), and the model's
// loss shifts them internally (position t predicts token t+1).
// DataLoader: fixed-length blocks of block_size tokens for pretraining.
// DocumentBatcher: one document per row, right-padded.
//
// Both shuffle with a portable PRNG (splitmix64), so a seed gives the same order on every
// machine and standard library. They yield the global batch, as a one-device program reads
// it (the compile layer gives each data-parallel rank its rows); a program sharding by hand
// sets rank and world_size, and rank r of w gets rows [r*B/w, (r+1)*B/w).
#pragma once
#include <cstdint>
#include <vector>

#include "solo/core/shape.h"
#include "solo/data/token_file.h"

namespace solo::data {

inline constexpr int64_t kIgnoreIndex = -100;

// Row-major [rows, seq_len] int64 arrays.
struct Batch {
  int64_t rows = 0;
  int64_t seq_len = 0;
  int64_t real_rows = 0;  // rows backed by data; the rest pad a final partial batch
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;
  std::vector<int64_t> attention_mask;  // 1 = real token, 0 = padding
  Shape shape() const { return Shape{rows, seq_len}; }
};

struct BatchingOptions {
  int64_t batch_size = 1;  // global batch size, over all ranks
  bool shuffle = false;
  uint64_t seed = 0;
  // When false, a final partial batch is padded to batch_size with rows that are all padding
  // (mask 0, labels -100), so every batch and every rank has the same shape.
  bool drop_last = true;
  // A share of the batch read by hand: rank r of world_size reads rows [r*B/w, (r+1)*B/w).
  // -1 (the default): the whole batch (0 of 1).
  int rank = -1;
  int world_size = -1;
};

// A deterministic permutation of [0, n) for (seed, epoch): Fisher-Yates driven by splitmix64.
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, int64_t epoch);

// Shared epoch/position bookkeeping and sharding over a list of row items (blocks or documents).
class BatchSchedule {
 public:
  BatchSchedule(int64_t num_items, const BatchingOptions& opt, const char* what);
  int64_t num_batches() const;
  int64_t local_batch_size() const { return opt_.batch_size / opt_.world_size; }
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }  // next batch index within the epoch
  // Moves to batch `position` of `epoch` (for resuming from a checkpoint).
  void seek(int64_t epoch, int64_t position);
  // Item indices of this rank's rows in batch `b` of the current epoch; -1 marks a pad row.
  std::vector<int64_t> local_items(int64_t b) const;
  // Returns the index of the next batch, or -1 at the end of the epoch (then starts the next).
  int64_t advance();
  const BatchingOptions& options() const { return opt_; }

 private:
  int64_t num_items_;
  BatchingOptions opt_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  std::vector<int64_t> order_;  // item order of the current epoch
};

class DataLoader {
 public:
  DataLoader(const TokenDataset& data, int64_t block_size, const BatchingOptions& opt);

  int64_t num_batches() const { return sched_.num_batches(); }  // per epoch
  int64_t block_size() const { return block_size_; }
  int64_t epoch() const { return sched_.epoch(); }
  void seek(int64_t epoch, int64_t position) { sched_.seek(epoch, position); }
  // This rank's part of batch `b` of the current epoch.
  Batch batch(int64_t b) const;
  // Next batch of the epoch; false at the end of an epoch (the following call starts the next).
  bool next(Batch& out);
  // Block indices of this rank's rows in batch `b` (-1 = pad row).
  std::vector<int64_t> batch_blocks(int64_t b) const { return sched_.local_items(b); }

 private:
  const TokenDataset& data_;
  int64_t block_size_;
  BatchSchedule sched_;
};

class DocumentBatcher {
 public:
  // Rows are the dataset's non-empty documents, truncated to max_length. pad_id must be a valid
  // token id (its value never reaches the loss); use e.g. the tokenizer's eos_id or 0 when it
  // has no pad piece.
  DocumentBatcher(const TokenDataset& data, int64_t max_length, int64_t pad_id,
                  const BatchingOptions& opt);

  int64_t num_batches() const { return sched_.num_batches(); }
  int64_t num_documents() const { return static_cast<int64_t>(docs_.size()); }
  int64_t epoch() const { return sched_.epoch(); }
  void seek(int64_t epoch, int64_t position) { sched_.seek(epoch, position); }
  Batch batch(int64_t b) const;
  bool next(Batch& out);

 private:
  const TokenDataset& data_;
  int64_t max_length_;
  int64_t pad_id_;
  std::vector<int64_t> docs_;  // non-empty document indices
  BatchSchedule sched_;
};

}  // namespace solo::data
