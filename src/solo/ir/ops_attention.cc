#include <cmath>

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

namespace {

// The log-sum-exp output is f32, except f64 for f64 inputs so gradient checks stay exact.
DType lse_dtype(DType dt) {
  return dt == DType::F64 ? DType::F64 : DType::F32;
}

// Checks q [B, T, Hq, D], k and v [B, S, Hkv, D] and key_mask [B, S] (when given).
void check_qkv(const Graph& g, const char* op, ValueId q, ValueId k, ValueId v, ValueId key_mask,
               bool causal, int64_t window) {
  const TensorType &tq = g.type(q), &tk = g.type(k), &tv = g.type(v);
  const std::vector<const TensorType*> qkv = {&tq, &tk, &tv};
  check_operands(is_floating(tq.dtype), op, "q, k and v must be float tensors", qkv);
  check_operands(tq.dtype == tk.dtype && tq.dtype == tv.dtype, op, "q, k and v dtypes differ", qkv);
  check_operands(tq.shape.rank() == 4 && tk.shape.rank() == 4 && tv.shape.rank() == 4, op,
                 "q must be [B, T, Hq, D] and k, v [B, S, Hkv, D]", qkv);
  check_operands(tk.shape == tv.shape, op, "k and v shapes differ", qkv);
  check_operands(tq.shape[0] == tk.shape[0], op, "batch sizes of q and k differ", qkv);
  check_operands(tq.shape[3] == tk.shape[3], op, "head dims of q and k differ", qkv);
  check_operands(tk.shape[2] > 0 && tq.shape[2] % tk.shape[2] == 0, op,
                 "query heads Hq must be a multiple of key/value heads Hkv", qkv);
  check_operands(!causal || tq.shape[1] == tk.shape[1], op,
                 "causal attention needs as many queries as keys (T == S)", qkv);
  SOLO_CHECK(window >= 0 && (window == 0 || causal), op, ": window ", window,
             " must be 0 (unlimited) or positive with causal attention");
  if (key_mask != kNoValue) {
    const TensorType& tm = g.type(key_mask);
    check_operands(tm.shape == Shape({tk.shape[0], tk.shape[1]}), op,
                   "key_mask must be [B, S] for k of shape [B, S, Hkv, D]", {&tq, &tk, &tm});
  }
}

Attrs attention_attrs(double scale, bool causal, int64_t window) {
  Attrs a = Attrs().set("scale", scale).set("causal", causal);
  if (window > 0) a.set("window", window);  // absent = unlimited: old graphs hash as before
  return a;
}

}  // namespace

std::vector<ValueId> attention(Graph& g, ValueId q, ValueId k, ValueId v, ValueId key_mask,
                               double scale, bool causal, int64_t window) {
  check_qkv(g, "Attention", q, k, v, key_mask, causal, window);
  const TensorType& tq = g.type(q);
  std::vector<ValueId> inputs = {q, k, v};
  if (key_mask != kNoValue) inputs.push_back(key_mask);
  const TensorType lse{Shape({tq.shape[0], tq.shape[2], tq.shape[1]}), lse_dtype(tq.dtype)};
  return g.add_node(OpKind::Attention, std::move(inputs), {tq, lse},
                    attention_attrs(scale, causal, window));
}

std::vector<ValueId> attention_backward(Graph& g, ValueId q, ValueId k, ValueId v, ValueId key_mask,
                                        ValueId out, ValueId lse, ValueId dout, double scale,
                                        bool causal, int64_t window) {
  check_qkv(g, "AttentionBackward", q, k, v, key_mask, causal, window);
  const TensorType &tq = g.type(q), &tk = g.type(k), &to = g.type(out), &tl = g.type(lse),
                   &tdo = g.type(dout);
  const std::vector<const TensorType*> ops = {&tq, &to, &tl, &tdo};
  check_operands(to.shape == tq.shape && to.dtype == tq.dtype, "AttentionBackward",
                 "out must match q's shape and dtype", ops);
  check_operands(tdo.shape == tq.shape && tdo.dtype == tq.dtype, "AttentionBackward",
                 "dout must match q's shape and dtype", ops);
  check_operands(
      tl.shape == Shape({tq.shape[0], tq.shape[2], tq.shape[1]}) && tl.dtype == lse_dtype(tq.dtype),
      "AttentionBackward", "lse must be [B, Hq, T] as returned by Attention", ops);
  std::vector<ValueId> inputs = {q, k, v, out, lse, dout};
  if (key_mask != kNoValue) inputs.push_back(key_mask);
  return g.add_node(OpKind::AttentionBackward, std::move(inputs), {tq, tk, tk},
                    attention_attrs(scale, causal, window));
}

ValueId scaled_dot_product_attention(Graph& g, ValueId q, ValueId k, ValueId v, ValueId key_mask,
                                     bool causal, int64_t window) {
  SOLO_CHECK(g.shape(q).rank() == 4,
             "Attention: q must be [B, T, Hq, D] (operands: ", types_str({&g.type(q)}), ")");
  const double scale = 1.0 / std::sqrt(static_cast<double>(g.shape(q)[3]));
  return attention(g, q, k, v, key_mask, scale, causal, window)[0];
}

}  // namespace solo::ir
