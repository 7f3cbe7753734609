// What every causal language model in Solo shares: the forward output, the Hugging Face
// label convention, and loading/saving in the Hugging Face layout.
#pragma once
#include <string>

#include "solo/io/hf_config.h"
#include "solo/nn/module.h"

namespace solo::models {

struct CausalLMOutput {
  Tensor loss;    // defined when labels were given: mean over non-ignored shifted labels
  Tensor logits;  // [B, T, V]
};

// Hugging Face semantics: labels == input_ids (with -100 where no loss is wanted); the
// model predicts token t+1 at position t, so labels are shifted left by one and the last
// position gets -100. logits [B, T, V], labels [B, T] -> scalar loss.
Tensor causal_lm_loss(const Tensor& logits, const Tensor& labels);

// Loads every parameter of `model` by name from the safetensors checkpoint in `dir`
// (single file or sharded) onto device `d`; stored f32, bf16 and f16 are converted to the
// parameter dtype. The parameters stay backed by the mapped files (Tensor::from_mapped), so
// the model may be built on the meta device and a plan reads only what each rank holds;
// names sharing one tensor (tied weights) stay tied.
// A missing or mis-shaped tensor is an error naming the checkpoint and the tensor, and so is
// a stored tensor the model does not use (it would otherwise change nothing, silently),
// except the names in `skip` and those ending in one of `buffer_suffixes` (buffers such as
// rotary inv_freq that the model recomputes).
void load_checkpoint(nn::Module& model, const std::string& dir, const Device& d,
                     const std::vector<std::string>& skip = {},
                     const std::vector<std::string>& buffer_suffixes = {});
// What a save writes besides the weights and config.json.
struct SaveOptions {
  // The tokenizer files (io/tokenizer_files.h) of this directory are copied into the
  // checkpoint, replacing the old ones; empty: those already in the target are kept. It may be
  // the target itself (saving where the model was loaded from).
  std::string tokenizer_from;
  uint64_t max_shard_bytes = uint64_t{5} << 30;  // model.safetensors is sharded above this
};

// Saves the checkpoint directory `dir` as a whole: the parameters (except the names in `skip`,
// e.g. a tied lm_head) as model.safetensors, config.json from `config` and the tokenizer files
// are written into a directory beside `dir` that then replaces it (io/staged_dir.h), so a
// crash leaves the old checkpoint or the new one, never a mix. Other files already in `dir`
// are kept; its old weights are not. Every rank calls it (a ZeRO plan gathers parameters
// collectively); one process writes.
void save_checkpoint(nn::Module& model, const io::ModelConfig& config, const std::string& dir,
                     const SaveOptions& options = {}, const std::vector<std::string>& skip = {});

}  // namespace solo::models
