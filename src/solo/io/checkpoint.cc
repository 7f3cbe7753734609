#include "solo/io/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "solo/core/atomic_file.h"
#include "solo/core/error.h"
#include "solo/io/file_util.h"

namespace solo::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// "model-DDDDD-of-DDDDD.safetensors"
bool is_shard_name(const std::string& name) {
  const std::string pattern = "model-#####-of-#####.safetensors";
  if (name.size() != pattern.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const bool ok = pattern[i] == '#' ? (name[i] >= '0' && name[i] <= '9') : name[i] == pattern[i];
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool is_checkpoint_file(const std::string& name) {
  return name == kSafetensorsSingleFile || name == kSafetensorsIndexFile || is_shard_name(name);
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir) {
  SafetensorsCheckpoint c;
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {
    c.source_ = dir;
    c.files_.push_back(SafetensorsFile::open(dir));
    c.tensors_ = c.files_.back().tensors();
    return c;
  }
  const fs::path index_path = fs::path(dir) / kSafetensorsIndexFile;
  const fs::path single_path = fs::path(dir) / kSafetensorsSingleFile;
  if (!fs::exists(index_path, ec)) {
    SOLO_CHECK(fs::exists(single_path, ec), "safetensors checkpoint ", dir, ": found neither ",
               kSafetensorsIndexFile, " nor ", kSafetensorsSingleFile);
    c.source_ = single_path.string();
    c.files_.push_back(SafetensorsFile::open(c.source_));
    c.tensors_ = c.files_.back().tensors();
    return c;
  }

  c.source_ = index_path.string();
  const std::string where = "safetensors index " + c.source_;
  const std::string text = detail::read_text_file(c.source_, "safetensors index");
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    SOLO_FAIL(where, ": not valid JSON: ", e.what());
  }
  SOLO_CHECK(index.is_object(), where, ": not a JSON object");
  const auto wm = index.find("weight_map");
  SOLO_CHECK(wm != index.end(), where, ": missing \"weight_map\"");
  SOLO_CHECK(wm->is_object(), where, ": \"weight_map\" is not a JSON object");

  // Open each shard once, in name order.
  std::map<std::string, size_t> shard_index;
  for (const auto& [name, file] : wm->items()) {
    SOLO_CHECK(file.is_string(), where, ": weight_map entry of '", name, "' is not a string");
    shard_index.emplace(file.get<std::string>(), 0);
  }
  for (auto& [file, i] : shard_index) {
    const fs::path rel(file);
    // Shard names are plain file names; refuse paths that escape the checkpoint directory.
    SOLO_CHECK(!file.empty() && rel.is_relative() &&
                   std::find(rel.begin(), rel.end(), fs::path("..")) == rel.end(),
               where, ": shard name '", file, "' is not a file name inside the directory");
    const fs::path shard = fs::path(dir) / rel;
    SOLO_CHECK(fs::exists(shard, ec), where, ": shard '", file,
               "' named in weight_map is missing (", shard.string(), ")");
    i = c.files_.size();
    c.files_.push_back(SafetensorsFile::open(shard.string()));
  }
  for (const auto& [name, file] : wm->items()) {
    const SafetensorsFile& shard = c.files_[shard_index.at(file.get<std::string>())];
    const auto it = shard.tensors().find(name);
    SOLO_CHECK(it != shard.tensors().end(), where, ": tensor '", name, "' is mapped to shard '",
               file.get<std::string>(), "' but that file does not contain it");
    c.tensors_.emplace(name, it->second);
  }
  return c;
}

const RawTensor& SafetensorsCheckpoint::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  SOLO_CHECK(it != tensors_.end(), "safetensors checkpoint ", source_, ": no tensor named '", name,
             "'");
  return it->second;
}

std::vector<std::string> write_sharded(
    const std::string& dir, const std::vector<std::pair<std::string, RawTensor>>& tensors,
    uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  SOLO_CHECK(max_shard_bytes > 0, "write_sharded ", dir, ": max_shard_bytes must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  SOLO_CHECK(!ec, "write_sharded ", dir, ": cannot create the directory: ", ec.message());

  // Greedy packing in the given order, as transformers' save_pretrained does.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = tensors[i].second.bytes.size();
    if (!shards.back().empty() && shard_bytes + n > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += n;
    total += n;
  }

  std::vector<std::string> written;
  if (shards.size() == 1) {
    // A stale index would take precedence over the new file in open(), so it goes first.
    fs::remove(fs::path(dir) / kSafetensorsIndexFile, ec);
    write_safetensors((fs::path(dir) / kSafetensorsSingleFile).string(), tensors, metadata);
    written.push_back(kSafetensorsSingleFile);
  } else {
    json weight_map = json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      std::vector<std::pair<std::string, RawTensor>> part;
      for (size_t i : shards[s]) {
        part.push_back(tensors[i]);
        weight_map[tensors[i].first] = name;
      }
      write_safetensors((fs::path(dir) / name).string(), part, metadata);
      written.push_back(name);
    }
    // The index goes last: until it exists, open() does not see the new shards.
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    write_file_atomic((fs::path(dir) / kSafetensorsIndexFile).string(), text);
    written.push_back(kSafetensorsIndexFile);
  }

  // Remove checkpoint files of an earlier write that this one did not replace.
  const std::set<std::string> keep(written.begin(), written.end());
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (is_checkpoint_file(name) && !keep.count(name)) stale.push_back(e.path());
  }
  for (const auto& p : stale) fs::remove(p, ec);
  return written;
}

}  // namespace solo::io
