#include "solo/core/rope_scaling.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "solo/core/error.h"

namespace solo {

namespace {

// base^(-2i/dim) rounded as torch does it: exponent and power in float32, then 1 / power.
std::vector<float> default_inv_freq(double base, int64_t dim) {
  std::vector<float> out(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    out[static_cast<size_t>(i)] = 1.0f / std::pow(static_cast<float>(base), e);
  }
  return out;
}

double get_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// NTK-aware: past the trained length the base grows with the current sequence length.
// transformers holds that length as a tensor, so the new base is float32 arithmetic.
std::vector<float> dynamic_inv_freq(const RopeScaling& s, int64_t dim, int64_t seq_len) {
  const int64_t max_len = s.original_max_position_embeddings;
  if (seq_len <= max_len) return default_inv_freq(s.theta, dim);
  const auto factor = static_cast<float>(s.factor);
  const float grown = factor * static_cast<float>(seq_len) / static_cast<float>(max_len) -
                      static_cast<float>(s.factor - 1);
  const auto exponent = static_cast<float>(static_cast<double>(dim) / static_cast<double>(dim - 2));
  return default_inv_freq(static_cast<float>(s.theta) * std::pow(grown, exponent), dim);
}

// Llama 3.1: long wavelengths divided by factor, short ones kept, a smooth blend between.
std::vector<float> llama3_inv_freq(const RopeScaling& s, int64_t dim) {
  std::vector<float> inv = default_inv_freq(s.theta, dim);
  const auto factor = static_cast<float>(s.factor), lo = static_cast<float>(s.low_freq_factor);
  const auto old_len = static_cast<float>(s.original_max_position_embeddings);
  const auto low_wavelen = static_cast<float>(
      static_cast<double>(s.original_max_position_embeddings) / s.low_freq_factor);
  const auto high_wavelen = static_cast<float>(
      static_cast<double>(s.original_max_position_embeddings) / s.high_freq_factor);
  const auto span = static_cast<float>(s.high_freq_factor - s.low_freq_factor);
  for (float& f : inv) {
    const float wavelen = static_cast<float>(2 * std::numbers::pi) / f;
    const float scaled = wavelen > low_wavelen ? f / factor : f;
    if (wavelen < high_wavelen || wavelen > low_wavelen) {
      f = scaled;
      continue;
    }
    const float smooth = (old_len / wavelen - lo) / span;
    f = (1 - smooth) * scaled / factor + smooth * scaled;
  }
  return inv;
}

// YaRN: interpolated (divided by factor) below the correction range, extrapolated (kept)
// above it, a linear ramp across it.
std::vector<float> yarn_inv_freq(const RopeScaling& s, int64_t dim) {
  const double base = s.theta;
  const auto correction_dim = [&](double rotations) {
    return (static_cast<double>(dim) *
            std::log(static_cast<double>(s.original_max_position_embeddings) /
                     (rotations * 2 * std::numbers::pi))) /
           (2 * std::log(base));
  };
  double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
  if (s.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
  std::vector<float> inv(static_cast<size_t>(dim / 2));
  const auto factor = static_cast<float>(s.factor);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    const float pos = std::pow(static_cast<float>(base), e);
    const float extrapolation = 1.0f / pos, interpolation = 1.0f / (factor * pos);
    const float ramp = std::clamp(
        (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f,
        1.0f);
    const float keep = 1 - ramp;  // share of the unscaled (extrapolated) frequency
    inv[static_cast<size_t>(i)] = interpolation * (1 - keep) + extrapolation * keep;
  }
  return inv;
}

double attr_or(const Attrs& a, const char* key, double fallback) {
  return a.has(key) ? a.f(key) : fallback;
}

}  // namespace

const char* rope_type_name(RopeType t) {
  switch (t) {
    case RopeType::Default:
      return "default";
    case RopeType::Linear:
      return "linear";
    case RopeType::Dynamic:
      return "dynamic";
    case RopeType::Llama3:
      return "llama3";
    case RopeType::Yarn:
      return "yarn";
  }
  return "?";
}

double yarn_attention_factor(double factor, double mscale, double mscale_all_dim) {
  if (mscale != 0 && mscale_all_dim != 0)
    return get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim);
  return get_mscale(factor, 1.0);
}

std::vector<float> rope_inv_freq(const RopeScaling& s, int64_t head_dim, int64_t seq_len) {
  SOLO_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: head dim must be even and positive, got ",
             head_dim);
  switch (s.type) {
    case RopeType::Default:
      return default_inv_freq(s.theta, head_dim);
    case RopeType::Linear: {
      std::vector<float> inv = default_inv_freq(s.theta, head_dim);
      for (float& f : inv) f /= static_cast<float>(s.factor);
      return inv;
    }
    case RopeType::Dynamic:
      return dynamic_inv_freq(s, head_dim, seq_len);
    case RopeType::Llama3:
      return llama3_inv_freq(s, head_dim);
    case RopeType::Yarn:
      return yarn_inv_freq(s, head_dim);
  }
  SOLO_FAIL("rope: unknown rope type ", static_cast<int64_t>(s.type));
}

void set_rope_attrs(Attrs& a, const RopeScaling& s) {
  a.set("theta", s.theta);
  if (s.type == RopeType::Default) return;
  a.set("rope_type", static_cast<int64_t>(s.type));
  a.set("factor", s.factor);
  if (s.type == RopeType::Linear) return;
  a.set("original_max_position_embeddings", s.original_max_position_embeddings);
  if (s.type == RopeType::Llama3) {
    a.set("low_freq_factor", s.low_freq_factor);
    a.set("high_freq_factor", s.high_freq_factor);
  } else if (s.type == RopeType::Yarn) {
    a.set("beta_fast", s.beta_fast);
    a.set("beta_slow", s.beta_slow);
    a.set("truncate", s.truncate);
    a.set("attention_factor", s.attention_factor);
  }
}

RopeScaling rope_scaling_from_attrs(const Attrs& a) {
  RopeScaling s;
  s.type = static_cast<RopeType>(a.i_or("rope_type", 0));
  s.theta = a.f("theta");
  s.factor = attr_or(a, "factor", 1.0);
  s.original_max_position_embeddings = a.i_or("original_max_position_embeddings", 0);
  s.low_freq_factor = attr_or(a, "low_freq_factor", 1.0);
  s.high_freq_factor = attr_or(a, "high_freq_factor", 4.0);
  s.beta_fast = attr_or(a, "beta_fast", 32.0);
  s.beta_slow = attr_or(a, "beta_slow", 1.0);
  s.truncate = a.i_or("truncate", 1) != 0;
  s.attention_factor = attr_or(a, "attention_factor", 1.0);
  return s;
}

}  // namespace solo
