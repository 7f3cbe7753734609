// Rotary position embedding frequencies, computed as Hugging Face transformers computes them
// for each rope_type (modeling_rope_utils.py). Shared by the Rope op's kernels on every backend
// and by the config parser, so the scheme travels as op attributes, not as a tensor.
#pragma once
#include <cstdint>
#include <vector>

#include "solo/core/attrs.h"

namespace solo {

enum class RopeType : int64_t { Default = 0, Linear = 1, Dynamic = 2, Llama3 = 3, Yarn = 4 };

// The names config.json uses ("default", "linear", "dynamic", "llama3", "yarn").
const char* rope_type_name(RopeType t);
inline constexpr const char* kSupportedRopeTypes = "default, linear, dynamic, llama3, yarn";

struct RopeScaling {
  RopeType type = RopeType::Default;
  double theta = 10000.0;
  double factor = 1.0;  // linear, dynamic, llama3, yarn
  // llama3 and yarn: the pretraining context; dynamic: max_position_embeddings, beyond which
  // the base grows with the sequence length.
  int64_t original_max_position_embeddings = 0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  double beta_fast = 32.0, beta_slow = 1.0;              // yarn
  bool truncate = true;                                  // yarn: floor/ceil the correction range
  // Multiplies cos and sin (yarn's mscale ratio, resolved when the config is read); 1 otherwise.
  double attention_factor = 1.0;

  bool operator==(const RopeScaling&) const = default;
};

// Inverse frequencies [head_dim / 2] in float32 with transformers' operation order.
// `seq_len` matters for dynamic only (the base grows once it exceeds
// original_max_position_embeddings).
std::vector<float> rope_inv_freq(const RopeScaling& s, int64_t head_dim, int64_t seq_len);

// Yarn's default attention factor: get_mscale(factor, mscale) / get_mscale(factor,
// mscale_all_dim) when both are non-zero, else get_mscale(factor).
double yarn_attention_factor(double factor, double mscale, double mscale_all_dim);

// Op attributes (only the fields the type uses) and back.
void set_rope_attrs(Attrs& a, const RopeScaling& s);
RopeScaling rope_scaling_from_attrs(const Attrs& a);

}  // namespace solo
