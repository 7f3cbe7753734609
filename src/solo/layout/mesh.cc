#include "solo/layout/mesh.h"

#include "solo/core/error.h"

namespace solo::layout {

Mesh::Mesh(std::vector<MeshAxis> axes) : axes_(std::move(axes)) {
  for (size_t k = 0; k < axes_.size(); ++k) {
    SOLO_CHECK(axes_[k].size >= 1, "mesh axis '", axes_[k].name, "' has size ", axes_[k].size,
               "; every axis needs at least one device");
    for (size_t j = 0; j < k; ++j)
      SOLO_CHECK(axes_[j].name != axes_[k].name, "mesh axis name '", axes_[k].name,
                 "' is used twice; give each axis its own name");
  }
}

int64_t Mesh::devices() const {
  int64_t n = 1;
  for (const MeshAxis& a : axes_) n *= a.size;
  return n;
}

std::vector<int64_t> Mesh::coordinate(int64_t rank) const {
  SOLO_CHECK(rank >= 0 && rank < devices(), "rank ", rank, " is not in mesh ", str(), " (",
             devices(), " devices)");
  std::vector<int64_t> c(axes_.size());
  for (size_t k = axes_.size(); k-- > 0;) {
    c[k] = rank % axes_[k].size;
    rank /= axes_[k].size;
  }
  return c;
}

int64_t Mesh::color_along(int k, int64_t rank) const {
  // The rank with this axis' coordinate zeroed identifies the group.
  std::vector<int64_t> c = coordinate(rank);
  c[static_cast<size_t>(k)] = 0;
  int64_t color = 0;
  for (size_t j = 0; j < axes_.size(); ++j) color = color * axes_[j].size + c[j];
  return color;
}

std::vector<int64_t> Mesh::group_along(int k, int64_t rank) const {
  std::vector<int64_t> stride(axes_.size(), 1);
  for (size_t j = axes_.size() - 1; j-- > 0;) stride[j] = stride[j + 1] * axes_[j + 1].size;
  const auto kk = static_cast<size_t>(k);
  const int64_t base = rank - coordinate(rank)[kk] * stride[kk];
  std::vector<int64_t> group;
  for (int64_t i = 0; i < axes_[kk].size; ++i) group.push_back(base + i * stride[kk]);
  return group;
}

std::string Mesh::str() const {
  std::string s;
  for (size_t k = 0; k < axes_.size(); ++k) {
    if (k > 0) s += " x ";
    s += axes_[k].name + "=" + std::to_string(axes_[k].size);
  }
  return s.empty() ? "(one device)" : s;
}

}  // namespace solo::layout
