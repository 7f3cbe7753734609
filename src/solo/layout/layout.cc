#include "solo/layout/layout.h"

#include "solo/core/error.h"

namespace solo::layout {

std::string AxisLayout::str() const {
  switch (kind) {
    case Replicate:
      return "R";
    case Split:
      return "S(" + std::to_string(dim) + ")";
    case Partial:
      return "P";
  }
  return "?";
}

std::string Layout::str() const {
  std::string s = "[";
  for (size_t k = 0; k < axes.size(); ++k) {
    if (k > 0) s += ", ";
    s += axes[k].str();
  }
  return s + "]";
}

namespace {
void check_fits(const Shape& global, const Layout& layout, const Mesh& mesh) {
  SOLO_CHECK(static_cast<int>(layout.axes.size()) == mesh.num_axes(), "layout ", layout.str(),
             " has ", layout.axes.size(), " entries but mesh ", mesh.str(), " has ",
             mesh.num_axes(), " axes; give one per mesh axis");
  for (const AxisLayout& a : layout.axes)
    SOLO_CHECK(a.kind != AxisLayout::Split || (a.dim >= 0 && a.dim < global.rank()), "layout ",
               layout.str(), " splits dimension ", a.dim, " of a tensor of shape ", global.str());
}
}  // namespace

Block block_of(const Shape& global, const Layout& layout, const Mesh& mesh,
               const std::vector<int64_t>& coordinate, int64_t dim) {
  check_fits(global, layout, mesh);
  Block b{0, global[static_cast<int>(dim)]};
  for (int k = 0; k < mesh.num_axes(); ++k) {
    const AxisLayout& a = layout.axes[static_cast<size_t>(k)];
    if (a.kind != AxisLayout::Split || a.dim != dim) continue;
    const int64_t n = mesh.axis(k).size;
    SOLO_CHECK(b.length % n == 0, "dimension ", dim, " of shape ", global.str(), " (", b.length,
               " left after earlier splits) does not divide over mesh axis '", mesh.axis(k).name,
               "' of size ", n, "; choose sizes that divide or another layout");
    b.length /= n;
    b.start += coordinate[static_cast<size_t>(k)] * b.length;
  }
  return b;
}

Shape local_shape(const Shape& global, const Layout& layout, const Mesh& mesh) {
  Shape local = global;
  const std::vector<int64_t> origin(static_cast<size_t>(mesh.num_axes()), 0);
  for (int d = 0; d < global.rank(); ++d)
    local[d] = block_of(global, layout, mesh, origin, d).length;
  return local;
}

}  // namespace solo::layout
