#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

ValueId reshape(Graph& g, ValueId x, const Shape& shape) {
  const Shape& s = g.shape(x);
  std::vector<int64_t> dims = shape.dims();
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < static_cast<int>(dims.size()); ++i) {
    if (dims[static_cast<size_t>(i)] == -1) {
      SOLO_CHECK(infer < 0, "Reshape: only one dimension may be -1 in ", shape.str());
      infer = i;
    } else {
      SOLO_CHECK(dims[static_cast<size_t>(i)] >= 0, "Reshape: negative dimension in ", shape.str());
      known *= dims[static_cast<size_t>(i)];
    }
  }
  if (infer >= 0) {
    SOLO_CHECK(known > 0 && s.numel() % known == 0, "Reshape: cannot reshape ", s.str(), " (",
               s.numel(), " elements) to ", shape.str());
    dims[static_cast<size_t>(infer)] = s.numel() / known;
  }
  const Shape out(dims);
  SOLO_CHECK(out.numel() == s.numel(), "Reshape: cannot reshape ", s.str(), " (", s.numel(),
             " elements) to ", shape.str(), " (", out.numel(), " elements)");
  if (out == s) return x;
  return g.add(OpKind::Reshape, {x}, {out, g.dtype(x)}, Attrs().set("shape", out.dims()));
}

}  // namespace solo::ir
