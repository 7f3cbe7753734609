// Host-side planning of a permutation shared by the backends' Permute kernels.
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "solo/core/shape.h"

namespace solo::kernels {

// The permutation with size-1 dims dropped and runs of input dims that stay adjacent and in
// order in the output merged into one dim; the element order is unchanged. E.g. [B, T, H, D]
// with perm (1, 2, 0, 3) becomes [B, T*H, D] with perm (1, 0, 2).
struct Coalesced {
  std::vector<int64_t> shape;  // input dims
  std::vector<int64_t> perm;   // output dim j is input dim perm[j]
};

inline Coalesced coalesce(const Shape& s, const std::vector<int64_t>& perm) {
  std::vector<int64_t> index(static_cast<size_t>(s.rank()), -1), dims;
  for (int i = 0; i < s.rank(); ++i)
    if (s[i] != 1) {
      index[static_cast<size_t>(i)] = static_cast<int64_t>(dims.size());
      dims.push_back(s[i]);
    }
  // Runs of consecutive input dims in output order, as [first, last] input dims.
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t p : perm) {
    const int64_t i = index[static_cast<size_t>(p)];
    if (i < 0) continue;
    if (!runs.empty() && runs.back().second + 1 == i)
      runs.back().second = i;
    else
      runs.push_back({i, i});
  }
  std::vector<size_t> by_input(runs.size());
  std::iota(by_input.begin(), by_input.end(), size_t{0});
  std::sort(by_input.begin(), by_input.end(),
            [&](size_t x, size_t y) { return runs[x].first < runs[y].first; });
  Coalesced c;
  c.shape.resize(runs.size());
  c.perm.resize(runs.size());
  for (size_t k = 0; k < by_input.size(); ++k) {
    const auto [first, last] = runs[by_input[k]];
    int64_t n = 1;
    for (int64_t i = first; i <= last; ++i) n *= dims[static_cast<size_t>(i)];
    c.shape[k] = n;
    c.perm[by_input[k]] = static_cast<int64_t>(k);
  }
  return c;
}

}  // namespace solo::kernels
