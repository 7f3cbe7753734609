// The op vocabulary shared by the graph IR and the backends. Each op's semantics,
// inputs, outputs and attributes are documented in ir/ops.h, where it is built; its facts
// (arity, in-place outputs, collective, cost class...) are its row in core/op_info.cc.
#pragma once
#include <cstdint>

namespace solo {

// clang-format off
#define SOLO_OPS(X)                                                              \
  /* leaves */                                                                   \
  X(Input) X(Full)                                                               \
  /* elementwise, NumPy broadcasting */                                          \
  X(Add) X(Sub) X(Mul) X(Div) X(Maximum) X(Minimum) X(Less) X(Where)             \
  X(AddScalar) X(MulScalar) X(PowScalar)                                         \
  X(Neg) X(Exp) X(Log) X(Sqrt) X(Rsqrt) X(Silu) X(Gelu)                          \
  X(SiluBackward) X(GeluBackward) X(Swiglu) X(SwigluBackward) X(Cast)             \
  /* reductions and broadcast */                                                 \
  X(Sum) X(Mean) X(BroadcastTo)                                                  \
  /* data movement */                                                            \
  X(Reshape) X(Permute) X(Slice) X(SliceBackward) X(Concat)                      \
  /* linear algebra and lookup */                                                \
  X(MatMul) X(Embedding) X(EmbeddingBackward)                                    \
  /* fused neural-network ops */                                                 \
  X(Softmax) X(SoftmaxBackward) X(RmsNorm) X(RmsNormBackward)                    \
  X(LayerNorm) X(LayerNormBackward) X(Rope)                                      \
  X(Attention) X(AttentionBackward) X(CrossEntropy) X(CrossEntropyBackward)      \
  /* vocabulary-parallel loss and lookup (this rank's block of the vocabulary) */ \
  X(VocabShardCrossEntropy) X(VocabShardCrossEntropyBackward)                    \
  X(VocabShardEmbedding) X(VocabShardEmbeddingBackward)                          \
  /* optimizer updates */                                                        \
  X(AdamWUpdate)                                                                 \
  /* collectives (run by the executor through its communicators) */              \
  X(AllReduce) X(AllGather) X(ReduceScatter) X(Send) X(Recv) X(LocalShard)
// clang-format on

enum class OpKind : uint16_t {
#define SOLO_OP_ENUM(name) name,
  SOLO_OPS(SOLO_OP_ENUM)
#undef SOLO_OP_ENUM
};

constexpr int kNumOps = 0
#define SOLO_OP_COUNT(name) +1
    SOLO_OPS(SOLO_OP_COUNT)
#undef SOLO_OP_COUNT
    ;

const char* op_name(OpKind op);  // "invalid" outside the vocabulary (core/op_info.cc)

}  // namespace solo
