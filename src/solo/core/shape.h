// Tensor shapes. Tensors are dense and row-major (contiguous); a shape is its dims.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace solo {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  // Dimension with Python-style negative indexing; throws on out-of-range.
  int64_t dim(int i) const;
  int64_t numel() const;
  const std::vector<int64_t>& dims() const { return dims_; }
  std::vector<int64_t> strides() const;  // row-major strides in elements
  std::string str() const;               // "[2, 3, 4]"

  bool operator==(const Shape& o) const { return dims_ == o.dims_; }
  bool operator!=(const Shape& o) const { return dims_ != o.dims_; }

 private:
  std::vector<int64_t> dims_;
};

// Normalises a possibly negative axis against rank; throws with `what` on error.
int normalize_axis(int axis, int rank, const char* what);

// NumPy broadcasting of two shapes; returns false when they are incompatible.
bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out);

}  // namespace solo
