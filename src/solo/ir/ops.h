// Graph-building ops. Each function checks its operands, infers the output shape and dtype,
// and appends one node; a bad operand throws solo::Error naming the op and the shapes.
// Nothing is computed here. Tensors are dense row-major; float ops need equal dtypes.
// Optional operands come last in a node's inputs and are omitted when absent.
//
// Implementations live in ops_<group>.cc, their VJP rules in autograd/vjp_<group>.cc and
// their kernels in backend/<name>/<group>.cc:
//   elementwise: Full, Add, Sub, Mul, Div, Where, *Scalar, unary math, Swiglu, Cast, Sum, Mean,
//                BroadcastTo
//   layout:      Reshape, Permute, Slice, SliceBackward, Concat, MatMul, Embedding(+Backward)
//   nn:          Softmax, RmsNorm, LayerNorm, Rope, CrossEntropy (+ their Backward ops)
//   attention:   Attention, AttentionBackward
//   vocab_parallel: VocabShardCrossEntropy, VocabShardEmbedding (+ their Backward ops)
#pragma once
#include <vector>

#include "solo/core/rope_scaling.h"
#include "solo/ir/graph.h"

namespace solo::ir {

// ---- elementwise --------------------------------------------------------------------------
// A tensor of `shape` filled with `value`.
ValueId full(Graph& g, const Shape& shape, DType dtype, double value);
// NumPy-broadcasting binary ops; a and b must have the same dtype.
ValueId add(Graph& g, ValueId a, ValueId b);
ValueId sub(Graph& g, ValueId a, ValueId b);
ValueId mul(Graph& g, ValueId a, ValueId b);
ValueId div(Graph& g, ValueId a, ValueId b);
ValueId maximum(Graph& g, ValueId a, ValueId b);
ValueId minimum(Graph& g, ValueId a, ValueId b);
// a < b, broadcast, as Bool (not differentiable).
ValueId less(Graph& g, ValueId a, ValueId b);
// where(cond, a, b): cond (Bool, or any integer/float dtype: nonzero = true) picks a else b;
// the three broadcast together; a and b share a dtype, which the result has.
ValueId where(Graph& g, ValueId cond, ValueId a, ValueId b);
// masked_fill(x, mask, v) = where(mask, v, x)
ValueId masked_fill(Graph& g, ValueId x, ValueId mask, double value);
// Scalar ops keep the scalar in attr "value".
ValueId add_scalar(Graph& g, ValueId x, double s);  // x + s
ValueId mul_scalar(Graph& g, ValueId x, double s);  // x * s
ValueId pow_scalar(Graph& g, ValueId x, double p);  // x ^ p
ValueId neg(Graph& g, ValueId x);
ValueId exp(Graph& g, ValueId x);
ValueId log(Graph& g, ValueId x);
ValueId sqrt(Graph& g, ValueId x);
ValueId rsqrt(Graph& g, ValueId x);
ValueId silu(Graph& g, ValueId x);  // x * sigmoid(x)
// gelu(x); tanh = true uses GPT-2's tanh approximation (attr "tanh").
ValueId gelu(Graph& g, ValueId x, bool tanh = false);
ValueId silu_backward(Graph& g, ValueId x, ValueId dy);  // dy * silu'(x)
// The Llama MLP's gated activation in one pass: silu(gate) * up (same shape and float dtype).
ValueId swiglu(Graph& g, ValueId gate, ValueId up);
// -> {dgate, dup} = {dy * up * silu'(gate), dy * silu(gate)}; the fused backward of swiglu
// (not differentiable itself, like the fused nn backward ops).
std::vector<ValueId> swiglu_backward(Graph& g, ValueId gate, ValueId up, ValueId dy);
ValueId gelu_backward(Graph& g, ValueId x, ValueId dy, bool tanh);  // dy * gelu'(x)
ValueId cast(Graph& g, ValueId x, DType to);                        // attr "dtype"
// Sum / mean over `axes` (negative allowed; empty = all axes). attrs "axes", "keepdim".
ValueId sum(Graph& g, ValueId x, std::vector<int64_t> axes = {}, bool keepdim = false);
ValueId mean(Graph& g, ValueId x, std::vector<int64_t> axes = {}, bool keepdim = false);
// Broadcasts x to `shape` (NumPy rules). attr "shape".
ValueId broadcast_to(Graph& g, ValueId x, const Shape& shape);
// Sums a broadcast gradient back to `shape` (sum over broadcast axes, then reshape).
ValueId sum_to(Graph& g, ValueId x, const Shape& shape);

// ---- data movement, matmul, lookup ---------------------------------------------------------
// Same data, new shape (one dim may be -1). attr "shape". Executes as a view (no copy).
ValueId reshape(Graph& g, ValueId x, const Shape& shape);
// Output dim i is input dim perm[i]. attr "perm".
ValueId permute(Graph& g, ValueId x, std::vector<int64_t> perm);
ValueId transpose(Graph& g, ValueId x, int d0, int d1);  // a permute
// x[..., start:end, ...] along `axis` (0 <= start <= end <= size). attrs "axis","start","end".
ValueId slice(Graph& g, ValueId x, int axis, int64_t start, int64_t end);
// Gradient of slice: dy placed at [start, start+len) along axis of a zero tensor of `shape`.
ValueId slice_backward(Graph& g, ValueId dy, const Shape& shape, int axis, int64_t start);
ValueId concat(Graph& g, const std::vector<ValueId>& xs, int axis);  // attr "axis"
// a: [..., M, K] ([..., K, M] if trans_a); b: [K, N] ([N, K] if trans_b), or batched with
// the same leading dims as a. Result [..., M, N]. attrs "trans_a", "trans_b".
ValueId matmul(Graph& g, ValueId a, ValueId b, bool trans_a = false, bool trans_b = false);
// x [..., in] @ w[out, in]^T (+ bias [out]).
ValueId linear(Graph& g, ValueId x, ValueId w, ValueId bias = kNoValue);
// weight [V, D], ids [...] (i32 or i64) -> [..., D]. An id outside [0, V) is an error at run.
ValueId embedding(Graph& g, ValueId weight, ValueId ids);
// Scatter-add of dy [..., D] into a zero [V, D] by ids. attr "num_embeddings".
ValueId embedding_backward(Graph& g, ValueId ids, ValueId dy, int64_t num_embeddings);

// ---- fused nn ops ----------------------------------------------------------------------------
ValueId softmax(Graph& g, ValueId x, int axis = -1);                  // attr "axis"
ValueId softmax_backward(Graph& g, ValueId y, ValueId dy, int axis);  // from the output y
// x [..., D], w [D]: x / sqrt(mean(x^2) + eps) * w. attr "eps".
ValueId rms_norm(Graph& g, ValueId x, ValueId w, double eps);
// -> {dx [..., D], dw [D]}
std::vector<ValueId> rms_norm_backward(Graph& g, ValueId x, ValueId w, ValueId dy, double eps);
// x [..., D], w [D], b [D]: (x - mean) / sqrt(var + eps) * w + b (biased var). attr "eps".
ValueId layer_norm(Graph& g, ValueId x, ValueId w, ValueId b, double eps);
// -> {dx, dw, db}
std::vector<ValueId> layer_norm_backward(Graph& g, ValueId x, ValueId w, ValueId dy, double eps);
// Rotary embedding, rotate-half convention (Hugging Face Llama). x [B, T, H, D], D even,
// position of row t is t. For i < D/2: f = rope_inv_freq(scaling, D, T)[i], a = t*f, s =
// scaling.attention_factor,
//   out[i] = s (x[i] cos a - x[i + D/2] sin a);   out[i + D/2] = s (x[i + D/2] cos a + x[i] sin a).
// inverse = true rotates by -a (the VJP). attrs: set_rope_attrs(scaling) and "inverse".
ValueId rope(Graph& g, ValueId x, const RopeScaling& scaling, bool inverse = false);
// The original scheme, f = theta^(-2i/D).
ValueId rope(Graph& g, ValueId x, double theta, bool inverse = false);
// Fused scaled-dot-product attention, grouped-query aware.
// q [B, T, Hq, D], k and v [B, S, Hkv, D] with Hq % Hkv == 0 (query head h reads kv head
// h / (Hq/Hkv)); key_mask [B, S] (nonzero = attend; kNoValue = none); causal: query t sees
// keys s <= t (requires T == S). window W > 0 (causal only): query t sees keys
// t - W < s <= t, the last W including itself (transformers' sliding_window_causal); 0 is
// unlimited and sets no attr, so unwindowed graphs hash as before. A query that sees no key
// outputs zeros.
// -> {out [B, T, Hq, D], lse [B, Hq, T] f32, f64 for f64 inputs (log-sum-exp of the scaled scores,
// -inf if none)} attrs "scale", "causal" and "window" (only when W > 0; readers take
// attrs.i_or("window", 0)). Node inputs: (q, k, v[, key_mask]).
std::vector<ValueId> attention(Graph& g, ValueId q, ValueId k, ValueId v, ValueId key_mask,
                               double scale, bool causal, int64_t window = 0);
// -> {dq, dk, dv}. Node inputs: (q, k, v, out, lse, dout[, key_mask]).
std::vector<ValueId> attention_backward(Graph& g, ValueId q, ValueId k, ValueId v, ValueId key_mask,
                                        ValueId out, ValueId lse, ValueId dout, double scale,
                                        bool causal, int64_t window = 0);
// Convenience: attention(...)[0] with scale 1/sqrt(D).
ValueId scaled_dot_product_attention(Graph& g, ValueId q, ValueId k, ValueId v,
                                     ValueId key_mask = kNoValue, bool causal = true,
                                     int64_t window = 0);
// logits [N, V] float, labels [N] i32/i64 -> scalar [] f32 (f64 for f64 logits): mean over
// rows whose label != ignore_index of -log softmax(logits)[label] (NaN when all are ignored,
// as in PyTorch). A label outside [0, V) that is not ignored is an error at run.
// attr "ignore_index".
ValueId cross_entropy(Graph& g, ValueId logits, ValueId labels, int64_t ignore_index = -100);
// dloss [] -> dlogits [N, V]
ValueId cross_entropy_backward(Graph& g, ValueId logits, ValueId labels, ValueId dloss,
                               int64_t ignore_index);

// ---- vocabulary-parallel loss and lookup -------------------------------------------------
// Tensor parallelism's blocks of the vocabulary (Megatron-LM's vocab-parallel cross-entropy
// and embedding): rank r of the `ranks` ranks of communicator group `group` holds block r,
// vocabulary entries [r Vn, (r+1) Vn) with V = ranks * Vn. The graph is the same on every
// rank; the kernels read r from attr "rank", which the executor sets (OpInfo::group_rank).
// attrs "ranks", "group" (and "ignore_index"). None is differentiable: the compile layer
// builds them, the backward ops included.

// logits block [N, Vn] float, labels [N] i32/i64 (whole: entries of the whole vocabulary)
// -> {lse [N], target [N]}, f32 (f64 for f64 logits): the row's logsumexp over this block,
// and its label's logit when the label is in this block (else 0; also for ignore_index).
// The one-device loss of row n is logsumexp over the ranks' lse[n] minus the sum over the
// ranks of target[n]. A label outside [0, V) that is not ignored is an error at run.
std::vector<ValueId> vocab_shard_cross_entropy(Graph& g, ValueId logits, ValueId labels,
                                               int64_t ranks, int64_t ignore_index, int64_t group);
// logits block [N, Vn], labels [N], lse [N] (of the whole row), scale [] (dloss / count)
// -> dlogits block [N, Vn] = (exp(logits - lse) - onehot(label - r Vn)) * scale, zero rows
// where label == ignore_index. Types: lse and scale of the loss dtype above.
ValueId vocab_shard_cross_entropy_backward(Graph& g, ValueId logits, ValueId labels, ValueId lse,
                                           ValueId scale, int64_t ranks, int64_t ignore_index,
                                           int64_t group);
// weight block [Vn, D], ids [...] (i32/i64, of the whole vocabulary) -> [..., D]: row id - r Vn
// of the block for an id in this block, zeros for the others (a partial sum over the ranks
// whose sum is embedding(weight, ids)). An id outside [0, V) is an error at run.
ValueId vocab_shard_embedding(Graph& g, ValueId weight, ValueId ids, int64_t ranks, int64_t group);
// ids [...], dy [..., D] -> dweight block [Vn, D]: the scatter-add of the rows of dy whose
// ids are in this block (this rank's block of embedding_backward). attr "num_embeddings" = Vn.
ValueId vocab_shard_embedding_backward(Graph& g, ValueId ids, ValueId dy, int64_t block_rows,
                                       int64_t ranks, int64_t group);

// ---- optimizer updates -----------------------------------------------------------------------
// One fused AdamW step (PyTorch semantics) for a parameter p with gradient g and moments m, v
// (same shape and float dtype); lr, bias1 = 1/(1-beta1^t), bias2 = 1/(1-beta2^t) are 0-d f32
// tensors so that every step has the same graph. -> {p', m', v'}:
//   m' = b1 m + (1-b1) g;  v' = b2 v + (1-b2) g^2;
//   p' = p (1 - lr wd) - lr bias1 m' / (sqrt(v' bias2) + eps)
// attrs "beta1", "beta2", "eps", "weight_decay". Not differentiable. Each output may be
// written over its old self (OpInfo::inplace: the memory plan updates a dead p, m, v in place).
std::vector<ValueId> adamw_update(Graph& g, ValueId p, ValueId grad, ValueId m, ValueId v,
                                  ValueId lr, ValueId bias1, ValueId bias2, double beta1,
                                  double beta2, double eps, double weight_decay);

// ---- collectives --------------------------------------------------------------------------
// Collectives over the ranks of communicator group `group` of the executor (0: the group it
// is given first, the data-parallel one; the device mesh adds more). attr "group".
// Gradients follow Megatron's pairing, for a loss that is the sum of the ranks' losses. The
// executor runs these and send/recv through a communicator, not a kernel (OpInfo::collective).

// Attr of a collective the pass that made it lets overlap later nodes: an executor with an
// asynchronous communicator starts it and waits before its first reader (runtime/memory_plan.h).
inline constexpr const char* kOverlapAttr = "overlap";

// Sum (average = true: mean) of x over the group's ranks; the identity on one rank. attr
// "average"; `overlap` sets kOverlapAttr. Its VJP is the identity (a forward all-reduce of
// replicated values has a pass-through backward).
ValueId all_reduce(Graph& g, ValueId x, bool average, int64_t group = 0, bool overlap = false);
// The same for several tensors in one node (a bucket of gradients): output k reduces input k.
std::vector<ValueId> all_reduce(Graph& g, const std::vector<ValueId>& xs, bool average,
                                int64_t group = 0, bool overlap = false);
// x [..., n, ...] on each of `ranks` ranks -> [..., ranks*n, ...] along `axis`: every rank's x
// in rank order. attrs "ranks" (the group's size, which the shape depends on), "group". The
// node gathers along axis 0; another axis is moved there and back by permutes. VJP: a
// reduce-scatter of the gradient (each rank's x was used by every rank).
ValueId all_gather(Graph& g, ValueId x, int64_t ranks, int64_t axis = 0, int64_t group = 0,
                   bool overlap = false);
// x [..., ranks*n, ...] -> [..., n, ...] along `axis`: rank r gets the sum over the ranks of
// block r. attrs "ranks", "group"; axis 0 in the node as above. VJP: an all-gather.
ValueId reduce_scatter(Graph& g, ValueId x, int64_t ranks, int64_t axis = 0, int64_t group = 0);
// x [ranks*n] (the same on every rank) -> [n]: this rank's block r, x[r*n, (r+1)*n). No
// communication; the executor supplies r, so the program is the same on every rank. attrs
// "ranks", "group". Not differentiable (the compile layer's sharding passes insert it).
ValueId local_shard(Graph& g, ValueId x, int64_t ranks, int64_t group = 0);

// Point to point, between this rank and rank `peer` of the group (pipeline stages). A send
// returns a token (bool, shape [0]): requesting it as an output is what makes the send run.
// A receive gives a tensor of `type` from the peer's send with the same tag. Nodes run in the
// order they were built, so the two ranks' programs must order their sends and receives to
// match. Gradients stop at them: a received tensor is a leaf of this rank's graph, and a
// pipeline sends its gradient back explicitly and seeds the sender's backward with it
// (autograd::gradients' seed). attrs "peer", "tag", "group".
ValueId send(Graph& g, ValueId x, int64_t peer, int64_t tag, int64_t group = 0);
ValueId recv(Graph& g, const TensorType& type, int64_t peer, int64_t tag, int64_t group = 0);

// Shared helper for op builders: throws "<op>: <message> (shapes ...)" when !ok.
void check_operands(bool ok, const char* op, const std::string& message,
                    const std::vector<const TensorType*>& operands);
std::string types_str(const std::vector<const TensorType*>& operands);

}  // namespace solo::ir
