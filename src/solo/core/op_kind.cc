#include "solo/core/op_kind.h"

namespace solo {

const char* op_name(OpKind op) {
  static const char* const kNames[] = {
#define SOLO_OP_NAME(name) #name,
      SOLO_OPS(SOLO_OP_NAME)
#undef SOLO_OP_NAME
  };
  const auto i = static_cast<int>(op);
  return i >= 0 && i < kNumOps ? kNames[i] : "invalid";
}

}  // namespace solo
