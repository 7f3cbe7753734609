#include "solo/data/dataloader.h"

#include <algorithm>
#include <new>
#include <numeric>
#include <stdexcept>
#include <string>

#include "solo/core/error.h"

namespace solo::data {

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Unbiased integer in [0, n) by rejection, so the result is the same everywhere.
uint64_t uniform_below(uint64_t& state, uint64_t n) {
  uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    uint64_t r = splitmix64(state);
    if (r >= threshold) return r % n;
  }
}

}  // namespace

std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> idx(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  // Mix seed and epoch so that nearby seeds/epochs give unrelated streams.
  uint64_t mix = seed;
  uint64_t state = splitmix64(mix) ^ static_cast<uint64_t>(epoch) * 0xd1b54a32d192ed03ULL;
  for (size_t i = idx.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(uniform_below(state, i));
    std::swap(idx[i - 1], idx[j]);
  }
  return idx;
}

// ---- schedule ----

namespace {
// Unset, a loader yields the whole global batch: the compile layer gives each rank its rows.
BatchingOptions placed(BatchingOptions opt) {
  if (opt.rank < 0) opt.rank = 0;
  if (opt.world_size < 0) opt.world_size = 1;
  return opt;
}
}  // namespace

BatchSchedule::BatchSchedule(int64_t num_items, const BatchingOptions& options, const char* what)
    : num_items_(num_items), opt_(placed(options)) {
  const BatchingOptions& opt = opt_;
  SOLO_CHECK(opt.batch_size > 0, what, ": batch_size must be positive, got ", opt.batch_size);
  SOLO_CHECK(opt.world_size > 0 && opt.rank >= 0 && opt.rank < opt.world_size, what, ": rank ",
             opt.rank, " is not in [0, world_size ", opt.world_size, ")");
  if (opt.batch_size % opt.world_size != 0) {
    int64_t w = opt.world_size;
    int64_t up = (opt.batch_size + w - 1) / w * w;
    int64_t down = opt.batch_size / w * w;
    SOLO_FAIL(what, ": batch_size ", opt.batch_size, " is not divisible by world_size ", w,
              "; use a multiple of ", w, " such as ", up,
              down > 0 ? " or " + std::to_string(down) : std::string());
  }
  seek(0, 0);
}

int64_t BatchSchedule::num_batches() const {
  return opt_.drop_last ? num_items_ / opt_.batch_size
                        : (num_items_ + opt_.batch_size - 1) / opt_.batch_size;
}

void BatchSchedule::seek(int64_t epoch, int64_t position) {
  SOLO_CHECK(epoch >= 0 && position >= 0 && position <= num_batches(),
             "data: cannot seek to epoch ", epoch, " batch ", position, " (", num_batches(),
             " batches per epoch)");
  if (order_.empty() || epoch != epoch_) {
    if (opt_.shuffle) {
      order_ = shuffled_indices(num_items_, opt_.seed, epoch);
    } else if (static_cast<int64_t>(order_.size()) != num_items_) {
      order_.resize(static_cast<size_t>(num_items_));
      std::iota(order_.begin(), order_.end(), int64_t{0});
    }
  }
  epoch_ = epoch;
  position_ = position;
}

std::vector<int64_t> BatchSchedule::local_items(int64_t b) const {
  SOLO_CHECK(b >= 0 && b < num_batches(), "data: batch ", b, " out of range [0, ", num_batches(),
             ")");
  int64_t local = local_batch_size();
  std::vector<int64_t> items(static_cast<size_t>(local), -1);
  for (int64_t r = 0; r < local; ++r) {
    int64_t global_row = b * opt_.batch_size + opt_.rank * local + r;
    if (global_row < num_items_) items[static_cast<size_t>(r)] = order_[global_row];
  }
  return items;
}

int64_t BatchSchedule::advance() {
  if (position_ >= num_batches()) {
    seek(epoch_ + 1, 0);
    return -1;
  }
  return position_++;
}

// ---- blocks ----

DataLoader::DataLoader(const TokenDataset& data, int64_t block_size, const BatchingOptions& opt)
    : data_(data), block_size_(block_size), sched_(data.num_blocks(block_size), opt, "DataLoader") {
  SOLO_CHECK(sched_.num_batches() > 0, "DataLoader: ", data.path(), " has ", data.num_tokens(),
             " tokens, ", data.num_blocks(block_size), " blocks of ", block_size + 1,
             " tokens: not one batch of ", opt.batch_size,
             "; use a smaller batch_size or block_size, or more data");
}

Batch DataLoader::batch(int64_t b) const {
  auto blocks = sched_.local_items(b);
  Batch out;
  out.rows = static_cast<int64_t>(blocks.size());
  out.seq_len = block_size_;
  size_t n = static_cast<size_t>(out.rows * block_size_);
  try {
    out.input_ids.assign(n, 0);
    out.labels.assign(n, kIgnoreIndex);
    out.attention_mask.assign(n, 0);
  } catch (const std::bad_alloc&) {
    SOLO_FAIL("out of host memory building a batch of ", out.rows, " x ", block_size_,
              " tokens: ", 3 * n * sizeof(int64_t),
              " bytes asked for (ids, labels and mask); lower --batch-size or --block-size, or "
              "switch to a flavor with more devices (solo switch), whose ranks each build "
              "their share");
  } catch (const std::length_error&) {
    SOLO_FAIL("a batch of ", out.rows, " x ", block_size_,
              " tokens is larger than any host's memory; lower --batch-size or --block-size");
  }
  std::vector<int64_t> window(static_cast<size_t>(block_size_) + 1);
  for (size_t r = 0; r < blocks.size(); ++r) {
    if (blocks[r] < 0) continue;
    ++out.real_rows;
    data_.block(blocks[r], block_size_, window);
    size_t row = r * static_cast<size_t>(block_size_);
    std::copy(window.begin(), window.end() - 1, out.input_ids.begin() + row);
    std::copy(window.begin(), window.end() - 1, out.labels.begin() + row);
    std::fill_n(out.attention_mask.begin() + row, block_size_, 1);
  }
  return out;
}

bool DataLoader::next(Batch& out) {
  int64_t b = sched_.advance();
  if (b < 0) return false;
  out = batch(b);
  return true;
}

// ---- documents ----

DocumentBatcher::DocumentBatcher(const TokenDataset& data, int64_t max_length, int64_t pad_id,
                                 const BatchingOptions& opt)
    : data_(data),
      max_length_(max_length),
      pad_id_(pad_id),
      docs_([&] {
        std::vector<int64_t> lengths(static_cast<size_t>(data.num_documents())), docs;
        data.document_lengths(0, lengths);
        for (size_t d = 0; d < lengths.size(); ++d)
          if (lengths[d] > 0) docs.push_back(static_cast<int64_t>(d));
        return docs;
      }()),
      sched_(static_cast<int64_t>(docs_.size()), opt, "DocumentBatcher") {
  SOLO_CHECK(max_length > 0, "DocumentBatcher: max_length must be positive, got ", max_length);
  SOLO_CHECK(pad_id >= 0, "DocumentBatcher: pad_id ", pad_id,
             " is not a token id; the tokenizer has no pad piece, so pass eos_id or 0");
  SOLO_CHECK(sched_.num_batches() > 0, "DocumentBatcher: ", data.path(), " has ", docs_.size(),
             " non-empty documents: not one batch of ", opt.batch_size,
             "; use a smaller batch_size or drop_last = false");
}

Batch DocumentBatcher::batch(int64_t b) const {
  auto rows = sched_.local_items(b);
  Batch out;
  out.rows = static_cast<int64_t>(rows.size());
  out.seq_len = max_length_;
  size_t n = static_cast<size_t>(out.rows * max_length_);
  out.input_ids.assign(n, pad_id_);
  out.labels.assign(n, kIgnoreIndex);
  out.attention_mask.assign(n, 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0) continue;
    ++out.real_rows;
    auto [begin, end] = data_.document(docs_[static_cast<size_t>(rows[r])]);
    int64_t len = std::min(end - begin, max_length_);
    size_t row = r * static_cast<size_t>(max_length_);
    std::span<int64_t> ids(out.input_ids.data() + row, static_cast<size_t>(len));
    data_.read_tokens(begin, ids);
    std::copy(ids.begin(), ids.end(), out.labels.begin() + row);
    std::fill_n(out.attention_mask.begin() + row, len, 1);
  }
  return out;
}

bool DocumentBatcher::next(Batch& out) {
  int64_t b = sched_.advance();
  if (b < 0) return false;
  out = batch(b);
  return true;
}

}  // namespace solo::data
