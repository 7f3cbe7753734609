#include <numeric>

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

namespace {
std::string ints_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}
}  // namespace

ValueId permute(Graph& g, ValueId x, std::vector<int64_t> perm) {
  const TensorType& t = g.type(x);
  const int r = t.shape.rank();
  const std::string what = "perm " + ints_str(perm) + " is not a permutation of the dims";
  check_operands(static_cast<int>(perm.size()) == r, "Permute", what, {&t});
  std::vector<bool> seen(static_cast<size_t>(r), false);
  for (int64_t& p : perm) {
    check_operands(p >= -r && p < r, "Permute", what, {&t});
    if (p < 0) p += r;
    check_operands(!seen[static_cast<size_t>(p)], "Permute", what, {&t});
    seen[static_cast<size_t>(p)] = true;
  }
  std::vector<int64_t> identity(static_cast<size_t>(r));
  std::iota(identity.begin(), identity.end(), 0);
  if (perm == identity) return x;
  std::vector<int64_t> out(static_cast<size_t>(r));
  for (int i = 0; i < r; ++i)
    out[static_cast<size_t>(i)] = t.shape[static_cast<int>(perm[static_cast<size_t>(i)])];
  return g.add(OpKind::Permute, {x}, {Shape(out), t.dtype}, Attrs().set("perm", perm));
}

ValueId transpose(Graph& g, ValueId x, int d0, int d1) {
  const int r = g.shape(x).rank();
  d0 = normalize_axis(d0, r, "transpose");
  d1 = normalize_axis(d1, r, "transpose");
  std::vector<int64_t> perm(static_cast<size_t>(r));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[static_cast<size_t>(d0)], perm[static_cast<size_t>(d1)]);
  return permute(g, x, std::move(perm));
}

ValueId slice(Graph& g, ValueId x, int axis, int64_t start, int64_t end) {
  const TensorType& t = g.type(x);
  axis = normalize_axis(axis, t.shape.rank(), "Slice");
  const int64_t size = t.shape[axis];
  check_operands(0 <= start && start <= end && end <= size, "Slice",
                 "range [" + std::to_string(start) + ", " + std::to_string(end) +
                     ") is not within [0, " + std::to_string(size) + "] along axis " +
                     std::to_string(axis),
                 {&t});
  if (start == 0 && end == size) return x;
  Shape out = t.shape;
  out[axis] = end - start;
  return g.add(OpKind::Slice, {x}, {out, t.dtype},
               Attrs().set("axis", axis).set("start", start).set("end", end));
}

ValueId slice_backward(Graph& g, ValueId dy, const Shape& shape, int axis, int64_t start) {
  const TensorType& t = g.type(dy);
  const TensorType target{shape, t.dtype};
  check_operands(t.shape.rank() == shape.rank(), "SliceBackward", "ranks differ", {&t, &target});
  axis = normalize_axis(axis, shape.rank(), "SliceBackward");
  bool ok = start >= 0 && start + t.shape[axis] <= shape[axis];
  for (int i = 0; i < shape.rank(); ++i) ok &= i == axis || t.shape[i] == shape[i];
  check_operands(ok, "SliceBackward",
                 "the gradient does not fit at offset " + std::to_string(start) + " along axis " +
                     std::to_string(axis) + " of the target shape",
                 {&t, &target});
  return g.add(OpKind::SliceBackward, {dy}, target,
               Attrs().set("shape", shape.dims()).set("axis", axis).set("start", start));
}

ValueId concat(Graph& g, const std::vector<ValueId>& xs, int axis) {
  SOLO_CHECK(!xs.empty(), "Concat: needs at least one tensor");
  std::vector<const TensorType*> types;
  for (ValueId x : xs) types.push_back(&g.type(x));
  const TensorType& t0 = *types[0];
  axis = normalize_axis(axis, t0.shape.rank(), "Concat");
  Shape out = t0.shape;
  out[axis] = 0;
  for (const TensorType* t : types) {
    check_operands(t->dtype == t0.dtype, "Concat", "dtypes differ", types);
    bool ok = t->shape.rank() == t0.shape.rank();
    for (int i = 0; ok && i < t0.shape.rank(); ++i) ok = i == axis || t->shape[i] == t0.shape[i];
    check_operands(ok, "Concat",
                   "shapes differ outside the concatenation axis " + std::to_string(axis), types);
    out[axis] += t->shape[axis];
  }
  if (xs.size() == 1) return xs[0];
  return g.add(OpKind::Concat, xs, {out, t0.dtype}, Attrs().set("axis", axis));
}

ValueId matmul(Graph& g, ValueId a, ValueId b, bool trans_a, bool trans_b) {
  const TensorType &ta = g.type(a), &tb = g.type(b);
  const Shape &sa = ta.shape, &sb = tb.shape;
  check_operands(ta.dtype == tb.dtype, "MatMul", "dtypes differ", {&ta, &tb});
  check_operands(is_floating(ta.dtype), "MatMul", "operands must be float", {&ta, &tb});
  check_operands(sa.rank() >= 2 && sb.rank() >= 2, "MatMul", "operands must have rank >= 2",
                 {&ta, &tb});
  bool batch_ok = sb.rank() == 2 || sb.rank() == sa.rank();
  for (int i = 0; batch_ok && sb.rank() > 2 && i < sa.rank() - 2; ++i) batch_ok = sa[i] == sb[i];
  check_operands(batch_ok, "MatMul", "b must be 2-D or batched with the same leading dims as a",
                 {&ta, &tb});
  const int ra = sa.rank(), rb = sb.rank();
  const int64_t m = trans_a ? sa[ra - 1] : sa[ra - 2], ka = trans_a ? sa[ra - 2] : sa[ra - 1];
  const int64_t kb = trans_b ? sb[rb - 1] : sb[rb - 2], n = trans_b ? sb[rb - 2] : sb[rb - 1];
  check_operands(ka == kb, "MatMul", "inner dimensions differ", {&ta, &tb});
  std::vector<int64_t> out(sa.dims().begin(), sa.dims().end() - 2);
  out.push_back(m);
  out.push_back(n);
  return g.add(OpKind::MatMul, {a, b}, {Shape(out), ta.dtype},
               Attrs().set("trans_a", trans_a).set("trans_b", trans_b));
}

ValueId linear(Graph& g, ValueId x, ValueId w, ValueId bias) {
  const TensorType tx = g.type(x), tw = g.type(w);  // copies: adding nodes moves values
  check_operands(
      tx.shape.rank() >= 1 && tw.shape.rank() == 2 && tx.shape[tx.shape.rank() - 1] == tw.shape[1],
      "linear", "expected x [..., in] and w [out, in]", {&tx, &tw});
  if (bias != kNoValue) {
    const TensorType& tbias = g.type(bias);
    check_operands(tbias.shape == Shape{tw.shape[0]}, "linear", "bias must be [out]",
                   {&tx, &tw, &tbias});
  }
  // A 1-D x is a single row: matmul needs rank >= 2.
  const ValueId x2 = tx.shape.rank() == 1 ? reshape(g, x, {1, tx.shape[0]}) : x;
  ValueId y = matmul(g, x2, w, false, true);
  if (x2 != x) y = reshape(g, y, {tw.shape[0]});
  return bias == kNoValue ? y : add(g, y, bias);
}

ValueId embedding(Graph& g, ValueId weight, ValueId ids) {
  const TensorType &tw = g.type(weight), &ti = g.type(ids);
  check_operands(tw.shape.rank() == 2, "Embedding", "weight must be [V, D]", {&tw, &ti});
  check_operands(ti.dtype == DType::I32 || ti.dtype == DType::I64, "Embedding",
                 "ids must be i32 or i64", {&tw, &ti});
  std::vector<int64_t> out = ti.shape.dims();
  out.push_back(tw.shape[1]);
  return g.add(OpKind::Embedding, {weight, ids}, {Shape(out), tw.dtype});
}

ValueId embedding_backward(Graph& g, ValueId ids, ValueId dy, int64_t num_embeddings) {
  const TensorType &ti = g.type(ids), &td = g.type(dy);
  check_operands(ti.dtype == DType::I32 || ti.dtype == DType::I64, "EmbeddingBackward",
                 "ids must be i32 or i64", {&ti, &td});
  check_operands(is_floating(td.dtype), "EmbeddingBackward", "dy must be float", {&ti, &td});
  bool ok = td.shape.rank() == ti.shape.rank() + 1;
  for (int i = 0; ok && i < ti.shape.rank(); ++i) ok = td.shape[i] == ti.shape[i];
  check_operands(ok, "EmbeddingBackward", "dy must be [..., D] where ids is [...]", {&ti, &td});
  SOLO_CHECK(num_embeddings > 0, "EmbeddingBackward: num_embeddings must be positive, got ",
             num_embeddings);
  const Shape out{num_embeddings, td.shape[td.shape.rank() - 1]};
  return g.add(OpKind::EmbeddingBackward, {ids, dy}, {out, td.dtype},
               Attrs().set("num_embeddings", num_embeddings));
}

}  // namespace solo::ir
