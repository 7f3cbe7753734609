#include "solo/core/op_info.h"

#include <cstddef>

namespace solo {

namespace {

using K = OpKind;
using C = OpCostClass;
using S = SplitRule;

// One row per op, in any order; fields left out take OpInfo's defaults (one output, priced as
// memory-bound, no special behaviour). Names come from SOLO_OPS.
constexpr OpInfo kRows[] = {
    // leaves
    {.op = K::Input, .cost = C::None, .split = S::Own},
    {.op = K::Full, .moves_elements = true, .split = S::Own},
    // elementwise
    {.op = K::Add, .min_inputs = 2, .max_inputs = 2, .elementwise = true, .split = S::Pointwise},
    {.op = K::Sub, .min_inputs = 2, .max_inputs = 2, .elementwise = true, .split = S::Pointwise},
    {.op = K::Mul, .min_inputs = 2, .max_inputs = 2, .elementwise = true, .split = S::Pointwise},
    {.op = K::Div, .min_inputs = 2, .max_inputs = 2, .elementwise = true, .split = S::Pointwise},
    {.op = K::Maximum,
     .min_inputs = 2,
     .max_inputs = 2,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::Minimum,
     .min_inputs = 2,
     .max_inputs = 2,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::Less, .min_inputs = 2, .max_inputs = 2, .elementwise = true, .split = S::Pointwise},
    {.op = K::Where,
     .min_inputs = 3,
     .max_inputs = 3,
     .moves_elements = true,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::AddScalar,
     .min_inputs = 1,
     .max_inputs = 1,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::MulScalar,
     .min_inputs = 1,
     .max_inputs = 1,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::PowScalar,
     .min_inputs = 1,
     .max_inputs = 1,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::Neg, .min_inputs = 1, .max_inputs = 1, .elementwise = true, .split = S::Pointwise},
    {.op = K::Exp, .min_inputs = 1, .max_inputs = 1, .elementwise = true, .split = S::Pointwise},
    {.op = K::Log, .min_inputs = 1, .max_inputs = 1, .elementwise = true, .split = S::Pointwise},
    {.op = K::Sqrt, .min_inputs = 1, .max_inputs = 1, .elementwise = true, .split = S::Pointwise},
    {.op = K::Rsqrt, .min_inputs = 1, .max_inputs = 1, .elementwise = true, .split = S::Pointwise},
    {.op = K::Silu, .min_inputs = 1, .max_inputs = 1, .elementwise = true, .split = S::Pointwise},
    {.op = K::Gelu, .min_inputs = 1, .max_inputs = 1, .elementwise = true, .split = S::Pointwise},
    {.op = K::SiluBackward,
     .min_inputs = 2,
     .max_inputs = 2,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::GeluBackward,
     .min_inputs = 2,
     .max_inputs = 2,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::Swiglu, .min_inputs = 2, .max_inputs = 2, .elementwise = true, .split = S::Pointwise},
    {.op = K::SwigluBackward,
     .min_inputs = 3,
     .max_inputs = 3,
     .outputs = 2,
     .elementwise = true,
     .split = S::Pointwise},
    {.op = K::Cast,
     .min_inputs = 1,
     .max_inputs = 1,
     .moves_elements = true,
     .elementwise = true,
     .split = S::Pointwise},
    // reductions and broadcast
    {.op = K::Sum, .min_inputs = 1, .max_inputs = 1, .split = S::Own},
    {.op = K::Mean, .min_inputs = 1, .max_inputs = 1, .split = S::Own},
    {.op = K::BroadcastTo,
     .min_inputs = 1,
     .max_inputs = 1,
     .moves_elements = true,
     .split = S::Own},
    // data movement
    {.op = K::Reshape,
     .min_inputs = 1,
     .max_inputs = 1,
     .cost = C::None,
     .view = true,
     .moves_elements = true,
     .split = S::Own},
    {.op = K::Permute, .min_inputs = 1, .max_inputs = 1, .moves_elements = true, .split = S::Own},
    {.op = K::Slice, .min_inputs = 1, .max_inputs = 1, .moves_elements = true, .split = S::Own},
    {.op = K::SliceBackward,
     .min_inputs = 1,
     .max_inputs = 1,
     .moves_elements = true,
     .split = S::Own},
    {.op = K::Concat,
     .min_inputs = 1,
     .max_inputs = kAnyArity,
     .moves_elements = true,
     .split = S::Own},
    // linear algebra and lookup
    {.op = K::MatMul, .min_inputs = 2, .max_inputs = 2, .cost = C::MatMul, .split = S::Own},
    // weight, ids -> the rows' vectors
    {.op = K::Embedding,
     .min_inputs = 2,
     .max_inputs = 2,
     .moves_elements = true,
     .split = S::Rows,
     .row_inputs = 0b10},
    // ids, dy -> dweight, summed over the rows
    {.op = K::EmbeddingBackward,
     .min_inputs = 2,
     .max_inputs = 2,
     .split = S::Rows,
     .row_inputs = 0b11,
     .row_sum_outputs = 0b1},
    // fused neural-network ops
    {.op = K::Softmax, .min_inputs = 1, .max_inputs = 1, .split = S::Rows, .row_inputs = 0b1},
    {.op = K::SoftmaxBackward,
     .min_inputs = 2,
     .max_inputs = 2,
     .split = S::Rows,
     .row_inputs = 0b11},
    {.op = K::RmsNorm,
     .min_inputs = 2,
     .max_inputs = 2,
     .split = S::Rows,
     .row_inputs = 0b01,
     .per_head = true},
    // x, w, dy -> dx, dw
    {.op = K::RmsNormBackward,
     .min_inputs = 3,
     .max_inputs = 3,
     .outputs = 2,
     .split = S::Rows,
     .row_inputs = 0b101,
     .row_sum_outputs = 0b10,
     .per_head = true},
    {.op = K::LayerNorm, .min_inputs = 3, .max_inputs = 3, .split = S::Rows, .row_inputs = 0b001},
    // x, w, dy -> dx, dw, db
    {.op = K::LayerNormBackward,
     .min_inputs = 3,
     .max_inputs = 3,
     .outputs = 3,
     .split = S::Rows,
     .row_inputs = 0b101,
     .row_sum_outputs = 0b110},
    {.op = K::Rope,
     .min_inputs = 1,
     .max_inputs = 1,
     .split = S::Rows,
     .row_inputs = 0b1,
     .per_head = true},  // [B, T, H, D]
    // q, k, v [, key mask] -> out, lse
    {.op = K::Attention,
     .min_inputs = 3,
     .max_inputs = 4,
     .outputs = 2,
     .cost = C::Attention,
     .split = S::Rows,
     .row_inputs = 0b1111,
     .per_head = true},
    // q, k, v, out, lse, dout [, key mask] -> dq, dk, dv
    {.op = K::AttentionBackward,
     .min_inputs = 6,
     .max_inputs = 7,
     .outputs = 3,
     .cost = C::Attention,
     .split = S::Rows,
     .row_inputs = 0b1111111,
     .per_head = true},
    {.op = K::CrossEntropy, .min_inputs = 2, .max_inputs = 2, .split = S::Own},
    {.op = K::CrossEntropyBackward, .min_inputs = 3, .max_inputs = 3, .split = S::Own},
    // logits block, labels -> lse, target logit of this rank's vocabulary block (per row)
    {.op = K::VocabShardCrossEntropy,
     .min_inputs = 2,
     .max_inputs = 2,
     .outputs = 2,
     .split = S::Own,
     .group_rank = true},
    // logits block, labels, lse, scale -> dlogits block
    {.op = K::VocabShardCrossEntropyBackward,
     .min_inputs = 4,
     .max_inputs = 4,
     .split = S::Own,
     .group_rank = true},
    // weight block, ids -> the rows' vectors of this rank's ids, zeros for the others'
    {.op = K::VocabShardEmbedding,
     .min_inputs = 2,
     .max_inputs = 2,
     .moves_elements = true,
     .split = S::Rows,
     .row_inputs = 0b10,
     .group_rank = true},
    // ids, dy -> this rank's block of dweight, summed over the rows
    {.op = K::VocabShardEmbeddingBackward,
     .min_inputs = 2,
     .max_inputs = 2,
     .split = S::Rows,
     .row_inputs = 0b11,
     .row_sum_outputs = 0b1,
     .group_rank = true},
    // p, grad, m, v, lr, bias1, bias2 -> p', m', v', each written over its old self
    {.op = K::AdamWUpdate,
     .min_inputs = 7,
     .max_inputs = 7,
     .outputs = 3,
     .elementwise = true,
     .inplace = {{{0, 0}, {1, 2}, {2, 3}}},
     .split = S::Pointwise},
    // collectives; an AllReduce or AllGather marked to overlap is started asynchronously
    {.op = K::AllReduce,
     .min_inputs = 1,
     .max_inputs = kAnyArity,
     .outputs = kAnyArity,
     .cost = C::Collective,
     .collective = true,
     .async_start = true,
     .split = S::Own},
    {.op = K::AllGather,
     .min_inputs = 1,
     .max_inputs = 1,
     .cost = C::Collective,
     .collective = true,
     .async_start = true,
     .split = S::Own},
    {.op = K::ReduceScatter,
     .min_inputs = 1,
     .max_inputs = 1,
     .cost = C::Collective,
     .collective = true},
    {.op = K::Send,
     .min_inputs = 1,
     .max_inputs = 1,
     .cost = C::Collective,
     .collective = true,
     .side_effect = true},
    // A Recv always runs: its Send on the peer does, and an unmatched Send would never end.
    {.op = K::Recv, .cost = C::Collective, .collective = true, .side_effect = true},
    // This rank's block of a replicated tensor: no communication, but only the executor knows
    // the rank (the program is the same on every rank), so it runs it like a collective.
    {.op = K::LocalShard, .min_inputs = 1, .max_inputs = 1, .collective = true},
};

constexpr const char* kNames[] = {
#define SOLO_OP_NAME(name) #name,
    SOLO_OPS(SOLO_OP_NAME)
#undef SOLO_OP_NAME
};

// The rows indexed by op, with their names; a missing or repeated row fails the build.
constexpr std::array<OpInfo, kNumOps> build_table() {
  std::array<OpInfo, kNumOps> table{};
  std::array<bool, kNumOps> seen{};
  for (const OpInfo& row : kRows) {
    const auto i = static_cast<size_t>(row.op);
    if (i >= table.size() || seen[i]) throw "op table: a row is repeated or out of range";
    seen[i] = true;
    table[i] = row;
    table[i].name = kNames[i];
  }
  for (bool s : seen)
    if (!s) throw "op table: an op of SOLO_OPS has no row";
  return table;
}

constexpr std::array<OpInfo, kNumOps> kTable = build_table();

}  // namespace

const OpInfo& op_info(OpKind op) {
  return kTable[static_cast<size_t>(op)];
}

const char* op_name(OpKind op) {
  const auto i = static_cast<int>(op);
  return i >= 0 && i < kNumOps ? kTable[static_cast<size_t>(i)].name : "invalid";
}

}  // namespace solo
