#include "solo/core/shape.h"

#include <sstream>

#include "solo/core/error.h"

namespace solo {

int64_t Shape::dim(int i) const {
  return (*this)[normalize_axis(i, rank(), "Shape::dim")];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

std::vector<int64_t> Shape::strides() const {
  std::vector<int64_t> s(dims_.size());
  int64_t acc = 1;
  for (size_t i = dims_.size(); i-- > 0;) {
    s[i] = acc;
    acc *= dims_[i];
  }
  return s;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < dims_.size(); ++i) os << (i ? ", " : "") << dims_[i];
  os << ']';
  return os.str();
}

int normalize_axis(int axis, int rank, const char* what) {
  const int a = axis < 0 ? axis + rank : axis;
  SOLO_CHECK(a >= 0 && a < rank, what, ": axis ", axis, " is out of range for a tensor of rank ",
             rank);
  return a;
}

bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out) {
  const int r = std::max(a.rank(), b.rank());
  std::vector<int64_t> dims(static_cast<size_t>(r));
  for (int i = 0; i < r; ++i) {
    const int ia = a.rank() - r + i, ib = b.rank() - r + i;
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    dims[static_cast<size_t>(i)] = da == 1 ? db : da;
  }
  *out = Shape(std::move(dims));
  return true;
}

}  // namespace solo
