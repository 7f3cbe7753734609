// What every causal language model in Solo shares: the forward output, the Hugging Face
// label convention, and loading/saving in the Hugging Face layout.
#pragma once
#include <string>

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
// Writes the parameters (except the names in `skip`, e.g. a tied lm_head) as
// model.safetensors (sharded above max_shard_bytes) in `dir`.
void save_checkpoint(nn::Module& model, const std::string& dir,
                     const std::vector<std::string>& skip = {},
                     uint64_t max_shard_bytes = uint64_t{5} << 30);

}  // namespace solo::models
