#include "solo/models/causal_lm.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "solo/core/error.h"
#include "solo/core/fault_point.h"
#include "solo/core/half.h"
#include "solo/core/process_place.h"
#include "solo/io/checkpoint.h"
#include "solo/io/staged_dir.h"
#include "solo/io/tokenizer_files.h"

namespace solo::models {

Tensor causal_lm_loss(const Tensor& logits, const Tensor& labels) {
  const int64_t b = logits.shape()[0], t = logits.shape()[1], v = logits.shape()[2];
  SOLO_CHECK(labels.shape() == Shape({b, t}), "labels have shape ", labels.shape().str(),
             " but the logits are ", logits.shape().str(), "; labels must be [batch, seq]");
  const Tensor pad = Tensor::full({b, 1}, -100.0, labels.dtype(), labels.device());
  const Tensor shifted = concat({slice(labels, 1, 1, t), pad}, 1);
  return cross_entropy(reshape(logits, {b * t, v}), reshape(shifted, {b * t}));
}

namespace {

bool skipped(const std::vector<std::string>& skip, const std::string& name) {
  return std::find(skip.begin(), skip.end(), name) != skip.end();
}

}  // namespace

void load_checkpoint(nn::Module& model, const std::string& dir, const Device& d,
                     const std::vector<std::string>& skip,
                     const std::vector<std::string>& buffer_suffixes) {
  // Shared by every loaded tensor: the files stay mapped while one of them reads from them.
  const auto owner =
      std::make_shared<const io::SafetensorsCheckpoint>(io::SafetensorsCheckpoint::open(dir));
  const io::SafetensorsCheckpoint& ckpt = *owner;
  const auto params = model.named_parameters();
  std::set<std::string> used;
  for (const auto& [name, param] : params) used.insert(name);
  for (auto& [name, param] : params) {
    if (skipped(skip, name)) continue;
    SOLO_CHECK(ckpt.contains(name), "checkpoint ", ckpt.source(), " has no tensor '", name,
               "' that the model needs; is it a checkpoint of this architecture?");
    const io::RawTensor& raw = ckpt.tensor(name);
    SOLO_CHECK(raw.shape == param->shape(), "checkpoint ", ckpt.source(), ": tensor '", name,
               "' has shape ", raw.shape.str(), " but the config gives ", param->shape().str());
    SOLO_CHECK(is_floating(raw.dtype), "checkpoint ", ckpt.source(), ": tensor '", name,
               "' is stored as ", dtype_name(raw.dtype), ", not a float type");
    Tensor loaded =
        Tensor::from_mapped({raw.bytes, raw.dtype, owner}, raw.shape, param->dtype(), d);
    loaded.set_name(param->name());
    if (param->requires_grad()) loaded.requires_grad_();
    const void* old = param->impl();
    for (auto& [other, slot] : params)
      if (slot->impl() == old) *slot = loaded;
  }
  for (const auto& [name, param] : params)
    SOLO_CHECK(param->device() == d, "load_checkpoint: parameter '", name,
               "' was not loaded (skipped and not tied to a loaded one)");
  // After the loop, so that a checkpoint of another architecture reports what it lacks first.
  for (const auto& [name, raw] : ckpt.tensors()) {
    if (used.count(name) || skipped(skip, name)) continue;
    // An init-capture: clang 14 cannot capture a structured binding.
    const bool buffer = std::any_of(buffer_suffixes.begin(), buffer_suffixes.end(),
                                    [&n = name](const std::string& s) { return n.ends_with(s); });
    SOLO_CHECK(buffer, "checkpoint ", ckpt.source(), " has a tensor '", name,
               "' that the model does not use; the config does not describe this checkpoint "
               "(a bias or layer it lacks?)");
  }
}

void save_checkpoint(nn::Module& model, const io::ModelConfig& config, const std::string& dir,
                     const SaveOptions& options, const std::vector<std::string>& skip) {
  // Every rank reads every parameter (a ZeRO plan gathers its blocks, which needs all the
  // ranks); one process writes them.
  const bool writes = process_place().writes_files();
  std::vector<std::vector<unsigned char>> host;  // keeps the bytes alive until written
  std::vector<std::pair<std::string, io::RawTensor>> tensors;
  const auto named = model.named_parameters();
  host.reserve(named.size());
  for (const auto& [name, param] : named) {
    if (skipped(skip, name)) continue;
    host.emplace_back(static_cast<size_t>(param->numel()) * dtype_size(param->dtype()));
    param->copy_to_host(host.back().data());
    if (!writes) {
      host.pop_back();
      continue;
    }
    tensors.emplace_back(
        name, io::RawTensor{param->dtype(), param->shape(), std::as_bytes(std::span(host.back()))});
  }
  if (!writes) return;
  io::StagedDirectory stage(dir);
  fault_point("save:stage_created");
  io::write_sharded(stage.path(), tensors, options.max_shard_bytes);
  fault_point("save:weights_written");
  io::write_hf_config(stage.path(), config);
  fault_point("save:config_written");
  const bool new_tokenizer = !options.tokenizer_from.empty();
  if (new_tokenizer) io::copy_tokenizer_files(options.tokenizer_from, stage.path());
  fault_point("save:tokenizer_copied");
  stage.commit([&](const std::string& name) {
    // Old weights never mix with new ones, nor one tokenizer's files with another's; an old
    // writer's stray temporary file is not worth keeping.
    const bool temporary = name.ends_with(".tmp") || name.find(".tmp.") != std::string::npos;
    return !io::is_checkpoint_file(name) && !(new_tokenizer && io::is_tokenizer_file(name)) &&
           !temporary;
  });
}

}  // namespace solo::models
