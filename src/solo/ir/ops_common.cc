#include <sstream>

#include "solo/core/error.h"
#include "solo/ir/ops.h"

namespace solo::ir {

std::string types_str(const std::vector<const TensorType*>& operands) {
  std::ostringstream os;
  for (size_t i = 0; i < operands.size(); ++i)
    os << (i ? ", " : "") << dtype_name(operands[i]->dtype) << operands[i]->shape.str();
  return os.str();
}

void check_operands(bool ok, const char* op, const std::string& message,
                    const std::vector<const TensorType*>& operands) {
  SOLO_CHECK(ok, op, ": ", message, " (operands: ", types_str(operands), ")");
}

}  // namespace solo::ir
