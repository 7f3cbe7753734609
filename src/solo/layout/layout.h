// How a tensor of the global (one-device) program lies on a mesh: for each mesh axis it is
// replicated, split along one of its dimensions, or a partial sum (each device holds a term;
// the tensor is their sum). OneFlow calls these SBP (split, broadcast, partial).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "solo/core/shape.h"
#include "solo/layout/mesh.h"

namespace solo::layout {

struct AxisLayout {
  enum Kind : uint8_t { Replicate, Split, Partial };
  Kind kind = Replicate;
  int64_t dim = 0;  // the tensor dimension a Split divides

  static AxisLayout replicate() { return {Replicate, 0}; }
  static AxisLayout split(int64_t dim) { return {Split, dim}; }
  static AxisLayout partial() { return {Partial, 0}; }
  bool operator==(const AxisLayout& o) const {
    return kind == o.kind && (kind != Split || dim == o.dim);
  }
  std::string str() const;  // "R", "S(1)", "P"
};

// One AxisLayout per mesh axis.
struct Layout {
  std::vector<AxisLayout> axes;

  static Layout replicated(const Mesh& mesh) {
    return {std::vector<AxisLayout>(static_cast<size_t>(mesh.num_axes()))};
  }
  bool operator==(const Layout& o) const { return axes == o.axes; }
  std::string str() const;  // "[S(0), R]"
};

// The shape each device holds of a tensor of `global` shape: split dimensions divided by the
// sizes of the axes that split them. Throws naming the dimension when one does not divide,
// or when the layout does not fit the mesh or the tensor's rank.
Shape local_shape(const Shape& global, const Layout& layout, const Mesh& mesh);

// Where the device at `coordinate` holds its block along dimension `dim`: the first index
// and the length (several axes may split one dimension; the earlier axis is the outer block).
struct Block {
  int64_t start = 0;
  int64_t length = 0;
};
Block block_of(const Shape& global, const Layout& layout, const Mesh& mesh,
               const std::vector<int64_t>& coordinate, int64_t dim);

}  // namespace solo::layout
