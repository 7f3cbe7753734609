// A device mesh: the devices of a flavor arranged as a grid of named axes (e.g. data x tensor),
// ranks in row-major order. Passed explicitly to whatever needs it; there is no global one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace solo::layout {

struct MeshAxis {
  std::string name;  // "dp", "tp", "pp": for messages and plans
  int64_t size = 1;
};

class Mesh {
 public:
  // Throws if an axis has size < 1 or two axes share a name.
  explicit Mesh(std::vector<MeshAxis> axes);

  int num_axes() const { return static_cast<int>(axes_.size()); }
  const MeshAxis& axis(int k) const { return axes_[static_cast<size_t>(k)]; }
  int64_t devices() const;  // product of the axis sizes
  // Position of `rank` along each axis (the last axis varies fastest).
  std::vector<int64_t> coordinate(int64_t rank) const;
  // The ranks that differ from `rank` only along axis k, in coordinate order: its group on
  // that axis (what Communicator::split(color, key) makes with color_along / key_along).
  std::vector<int64_t> group_along(int k, int64_t rank) const;
  // Ranks with equal color share a group along axis k; key orders them within it.
  int64_t color_along(int k, int64_t rank) const;
  int64_t key_along(int k, int64_t rank) const { return coordinate(rank)[static_cast<size_t>(k)]; }
  std::string str() const;  // "dp=2 x tp=4"

 private:
  std::vector<MeshAxis> axes_;
};

}  // namespace solo::layout
