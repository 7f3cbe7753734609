// Hugging Face checkpoints in safetensors: a single model.safetensors, or shards
// model-00001-of-0000N.safetensors listed by model.safetensors.index.json
// ({"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file name}}).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "solo/io/safetensors.h"

namespace solo::io {

inline constexpr const char* kSafetensorsSingleFile = "model.safetensors";
inline constexpr const char* kSafetensorsIndexFile = "model.safetensors.index.json";

// Whether a file name is one of a checkpoint's weight files: model.safetensors, the index or
// a shard model-DDDDD-of-DDDDD.safetensors.
bool is_checkpoint_file(const std::string& name);

class SafetensorsCheckpoint {
 public:
  // `dir` holds model.safetensors.index.json (preferred when present) or model.safetensors;
  // a path to a .safetensors file is opened as a one-file checkpoint. With an index, the
  // tensors are exactly those of its weight_map, each taken from the shard it names; a
  // missing shard file or a tensor absent from its shard is an error.
  static SafetensorsCheckpoint open(const std::string& dir);

  const std::map<std::string, RawTensor>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws naming the checkpoint when there is no such tensor.
  const RawTensor& tensor(const std::string& name) const;
  // The files opened, in name order; RawTensor bytes point into their mappings.
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, RawTensor> tensors_;
};

// Writes the tensors under `dir` (created if missing): one model.safetensors when their total
// size is at most max_shard_bytes, otherwise shards of at most max_shard_bytes each (a single
// larger tensor gets a shard of its own) filled in the given order, then the index with
// total_size = the sum of tensor bytes. Each shard gets `metadata`; the default
// {"format": "pt"} is what transformers expects. Checkpoint files left in `dir` by an earlier
// write (model.safetensors, the index, model-*-of-*.safetensors) are removed afterwards so
// that open() cannot pick up stale weights. Returns the file names written.
std::vector<std::string> write_sharded(
    const std::string& dir, const std::vector<std::pair<std::string, RawTensor>>& tensors,
    uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace solo::io
